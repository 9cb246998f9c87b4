"""Naive formulas, written the way the papers state them (explicit tensors, loops over segments and
tokens) and float64-friendly, that tests and benchmarks compare the ops against.

Nothing in the ops calls this module: it exists so that every check has one obvious, slow and correct
counterpart. Conventions match the ops: ``[B, H, L, D]`` dense, packed ``[T, H, D]`` + ``cu_seqlens``,
boolean masks with True = may attend, and an additive ``bias`` added to the *scaled* logits.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from core.ops._segments import pad_segments, unpad_segments


def softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    allowed: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """``softmax(q kᵀ·scale + bias) v`` over the ``allowed`` keys (bool, broadcast to
    ``[B, H, Lq, Lk]``); ``scale`` defaults to ``1/sqrt(D)``. A row with no allowed key gives zeros."""
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    logits = q @ k.transpose(-1, -2) * scale
    if bias is not None:
        logits = logits + bias
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    return torch.softmax(logits, dim=-1).nan_to_num(0.0) @ v


def shaw_relative_logits(q: torch.Tensor, rel_emb: torch.Tensor, causal: bool) -> torch.Tensor:
    """Unscaled ``S_rel[b, h, i, j] = q_i · E[h, clip(j − i)]`` ``[B, H, L, L]`` through Shaw et al.'s
    (2018) explicit ``[H, L, L, D]`` tensor of embeddings.

    ``rel_emb`` ``[H, R, D]``: row r holds distance r − K, R = K + 1 if ``causal`` (−K…0: later keys
    read the distance-0 row) else 2K + 1 (−K…K); farther distances use the edge row.
    """
    length, rows = q.shape[-2], rel_emb.shape[-2]
    max_rel = rows - 1 if causal else (rows - 1) // 2
    positions = torch.arange(length, device=q.device)
    distance = positions[None, :] - positions[:, None]  # [L, L], j − i
    clipped = distance.clamp(-max_rel, 0 if causal else max_rel) + max_rel
    return torch.einsum("bhid,hijd->bhij", q, rel_emb[:, clipped])


def per_segment(
    cu_seqlens: torch.Tensor, fn: Callable[..., torch.Tensor], *packed: torch.Tensor
) -> torch.Tensor:
    """Apply ``fn`` to each segment's rows of the packed tensors ``[T, ...]`` and concatenate."""
    segments = itertools.pairwise(cu_seqlens.tolist())
    return torch.cat([fn(*(x[start:end] for x in packed)) for start, end in segments])


def segment_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False
) -> torch.Tensor:
    """Softmax attention within one segment: ``q [Lq, H, D]``, ``k [Lk, H, D]``, ``v [Lk, H, Dv]`` →
    ``[Lq, H, Dv]``; ``causal`` lets query i see keys j ≤ i."""
    allowed = None
    if causal:
        allowed = torch.ones(q.shape[0], k.shape[0], dtype=torch.bool, device=q.device).tril()
    q_HLD, k_HLD, v_HLD = (x.transpose(0, 1) for x in (q, k, v))
    return softmax_attention(q_HLD, k_HLD, v_HLD, allowed).transpose(0, 1)


def linear_attention_tokens(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """ScatterFormer's linear attention in one segment, token by token (φ = ReLU):
    ``y_i = Σ_j (φ(q_i)·φ(k_j)) v_j / (Σ_j φ(q_i)·φ(k_j) + eps)``; ``[L, H, D]`` → ``[L, H, Dv]``."""
    phi_q, phi_k = q.relu(), k.relu()
    out = v.new_empty(q.shape[0], q.shape[1], v.shape[2])
    for i in range(q.shape[0]):
        similarity = (phi_q[i][None] * phi_k).sum(-1)  # [L, H]
        out[i] = (similarity[..., None] * v).sum(0) / (similarity.sum(0)[..., None] + eps)
    return out


def padded_varlen_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor
) -> torch.Tensor:
    """Varlen attention the usual way without varlen support: scatter packed ``[T, H, D]`` into
    ``[N, Lmax, H, D]``, one dense SDPA with a key-padding mask, gather back to ``[T, H, Dv]``."""
    (q_pad, valid), (k_pad, _), (v_pad, _) = (pad_segments(x, cu_seqlens) for x in (q, k, v))
    out = F.scaled_dot_product_attention(
        q_pad.transpose(1, 2),
        k_pad.transpose(1, 2),
        v_pad.transpose(1, 2),
        attn_mask=valid[:, None, None, :],
    )
    return unpad_segments(out.transpose(1, 2), valid)
