"""Independent formulas the recordings are checked against: attention weights straight from their
definition, in float64, one tensor at a time (no blocks, no base-2 scores, no skewing)."""

from __future__ import annotations

import torch

from core.nn import MultiHeadAttention


def heads(mha: MultiHeadAttention, x: torch.Tensor, context: torch.Tensor | None = None):
    """q, k, v ``[B, H, L, d_head]`` through the module's own projections."""
    source = x if context is None else context
    return tuple(
        proj(inp).unflatten(-1, (mha.n_heads, mha.d_head)).transpose(1, 2)
        for proj, inp in ((mha.q_proj, x), (mha.k_proj, source), (mha.v_proj, source))
    )


def softmax_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    allowed: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    extra_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """``softmax((q kᵀ + extra) / √d + bias)`` over keys that are allowed and not ``-inf`` in the
    bias; rows that may see no key are 0. float64, ``[B, H, Lq, Lk]``."""
    q, k = q.double(), k.double()
    logits = q @ k.transpose(-1, -2)
    if extra_logits is not None:
        logits = logits + extra_logits.double()
    logits = logits / q.shape[-1] ** 0.5
    visible = torch.ones_like(logits, dtype=torch.bool)
    if bias is not None:
        logits = logits + bias.double()
        visible = visible & (bias > float("-inf"))
    if allowed is not None:
        visible = visible & allowed
    logits = logits.masked_fill(~visible, float("-inf"))
    return torch.softmax(logits, -1).nan_to_num(0.0)


def bottom_right_causal(len_q: int, len_k: int) -> torch.Tensor:
    """``[Lq, Lk]``: key j visible to query i iff j ≤ i + Lk − Lq, written as a loop."""
    allowed = torch.zeros(len_q, len_k, dtype=torch.bool)
    for i in range(len_q):
        for j in range(len_k):
            allowed[i, j] = j <= i + len_k - len_q
    return allowed


def entropy(weights: torch.Tensor) -> torch.Tensor:
    """``−Σ p log p`` per row with 0 log 0 = 0."""
    logs = torch.where(weights > 0, weights.log(), torch.zeros_like(weights))
    return -(weights * logs).sum(-1)
