"""Variable-length FlashAttention over packed segments (FlashAttention-2 varlen convention).

``q [T, H, D]``, ``k [Tk, H, D]``, ``v [Tk, H, Dv]`` and int32 ``cu_seqlens [N+1]`` → ``[T, H, Dv]``.
The grid is (segment · head, query block of the longest segment): each program reads its segment's
start and length from ``cu_seqlens`` and exits at once when its block lies past the segment's end, so
nothing is padded and the work is Σ Lᵢ² tiles rather than N·Lmax².
"""

from __future__ import annotations

import torch

from core.kernels._flash import flash_attention


def _as_bhld(x: torch.Tensor) -> torch.Tensor:
    """``[T, H, D]`` → the ``[1, H, T, D]`` view the shared kernels index (no copy when contiguous)."""
    return x.contiguous().unsqueeze(0).transpose(1, 2)


def varlen_attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    *,
    cu_seqlens_k: torch.Tensor | None = None,
    causal: bool = False,
    scale: float,
) -> torch.Tensor:
    """Softmax attention within each segment; ``causal`` lets query i see keys j ≤ i of its segment
    (only with ``cu_seqlens_k`` absent or equal). Empty segments are allowed; a query whose key
    segment is empty gets 0."""
    out = flash_attention(
        _as_bhld(q), _as_bhld(k), _as_bhld(v), scale=scale, causal=causal,
        cu_seqlens_q=cu_seqlens, cu_seqlens_k=cu_seqlens_k,
    )  # fmt: skip
    return out.transpose(1, 2).squeeze(0)
