"""Dense FlashAttention-2 (Dao 2023) with boolean mask, additive bias and bottom-right causal masking.

``q [B, H, Lq, D]``, ``k [B, H, Lk, D]``, ``v [B, H, Lk, Dv]`` → ``[B, H, Lq, Dv]``. Tiles of queries
stream over tiles of keys with the online softmax, so memory is O(B·H·L·D) whatever the length; the
backward recomputes the probabilities from the saved log-sum-exp. The kernels live in
:mod:`core.kernels._flash`, shared with the relative and varlen ops.
"""

from __future__ import annotations

import torch

from core.kernels._flash import flash_attention


def attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    causal: bool = False,
    scale: float,
) -> torch.Tensor:
    """``softmax(q kᵀ·scale + bias) v`` over the keys ``mask`` (True = may attend) and ``causal``
    (key j visible to query i iff j ≤ i + Lk − Lq) allow; rows that see no key give 0.

    ``mask`` and ``bias`` broadcast to ``[B, H, Lq, Lk]``; ``bias`` gets a gradient when it requires one
    (written as a dense fp32 ``[B, H, Lq, Lk]`` buffer, then summed over its broadcast dims).
    """
    return flash_attention(q, k, v, scale=scale, causal=causal, mask=mask, bias=bias)
