"""Small helpers shared by the kernels: output buffers, dot precision, register widths, masked tiles."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl


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


@triton.jit
def load_rows(base, rows, stride_row, num_rows, num_cols, BLOCK_COLS: tl.constexpr):  # noqa: N803
    """Tile ``[len(rows), BLOCK_COLS]`` of the matrix at ``base`` (unit stride along a row), zeros
    outside its ``num_rows × num_cols`` elements."""
    cols = tl.arange(0, BLOCK_COLS)
    inside = (rows < num_rows)[:, None] & (cols < num_cols)[None, :]
    return tl.load(base + rows[:, None] * stride_row + cols[None, :], mask=inside, other=0.0)


@triton.jit
def store_rows(base, rows, stride_row, num_rows, num_cols, BLOCK_COLS: tl.constexpr, tile):  # noqa: N803
    """Write ``tile`` (cast to the buffer's dtype) where :func:`load_rows` would read it."""
    cols = tl.arange(0, BLOCK_COLS)
    inside = (rows < num_rows)[:, None] & (cols < num_cols)[None, :]
    ptrs = base + rows[:, None] * stride_row + cols[None, :]
    tl.store(ptrs, tile.to(base.dtype.element_ty), mask=inside)
