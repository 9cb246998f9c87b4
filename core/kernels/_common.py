"""Small helpers shared by the kernel wrappers: output buffers, dot precision, register widths."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton


def empty(
    shape: Sequence[int],
    dtype: torch.dtype,
    device: torch.device,
    strides: Sequence[int] | None = None,
) -> torch.Tensor:
    """Uninitialised output buffer (row-major, or with the given ``strides``); every kernel wrapper
    allocates through it so that tests can swap it for a NaN-filled one and catch any element a kernel
    forgets to write."""
    if strides is None:
        return torch.empty(tuple(shape), dtype=dtype, device=device)
    return torch.empty_strided(tuple(shape), tuple(strides), dtype=dtype, device=device)


def dense_rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself when its last dim has unit stride and its elements tile memory without gaps or
    overlaps (so a gradient can be allocated with the same strides), else a contiguous copy."""
    dims = sorted((d for d in range(x.dim()) if x.shape[d] != 1), key=lambda d: x.stride(d))
    expected = 1
    for d in dims:
        if x.stride(d) != expected:
            return x.contiguous()
        expected *= x.shape[d]
    if x.dim() and x.shape[-1] != 1 and x.stride(-1) != 1:
        return x.contiguous()
    return x


def dot_precision(dtype: torch.dtype) -> str:
    """``"ieee"`` for fp32 inputs (GPUs default to tf32, ~1e-3 error); half types use tensor cores."""
    return "ieee" if dtype == torch.float32 else "tf32"


def block_size(dim: int) -> int:
    """Power-of-2 register width covering a head dim (``tl.dot`` needs at least 16); the rest is masked."""
    return max(16, triton.next_power_of_2(dim))
