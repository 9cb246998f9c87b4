"""Naive formulas, written loop-by-loop in float64, that the ops are checked against."""

from __future__ import annotations

import torch


def softmax_attention(q, k, v, allowed=None, bias=None, scale=None):
    """``softmax(q kᵀ·scale + bias)`` over allowed keys; rows with no allowed key give zeros."""
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    logits = q @ k.transpose(-1, -2) * scale
    if bias is not None:
        logits = logits + bias
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(logits, dim=-1).nan_to_num(0.0)
    return weights @ v


def shaw_relative_logits(q, rel_emb, causal):
    """``q_i · E[clip(j - i)]`` through the explicit ``[L, L, D]`` tensor of Shaw et al. (2018)."""
    length, rows = q.shape[-2], rel_emb.shape[-2]
    max_rel = rows - 1 if causal else (rows - 1) // 2
    dist = torch.arange(length)[None, :] - torch.arange(length)[:, None]
    upper = 0 if causal else max_rel
    e_lld = rel_emb[:, dist.clamp(-max_rel, upper) + max_rel]  # [H, L, L, D]
    return torch.einsum("bhid,hijd->bhij", q, e_lld)


def per_segment(cu_seqlens, fn, *packed):
    """Apply ``fn`` to each segment's slice of the packed tensors and concatenate."""
    outs = []
    for start, end in zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist(), strict=True):
        outs.append(fn(*(x[start:end] for x in packed)))
    return torch.cat(outs)
