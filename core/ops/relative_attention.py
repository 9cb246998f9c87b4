"""Relative-position self-attention of the Music Transformer (Huang et al. 2018, §3.4), memory-efficient.

Logits are ``(q_i·k_j + q_i·E[clip(j − i)]) · scale``: a learned embedding per relative distance, as in
Shaw et al. (2018) but without their ``[L, L, D]`` tensor. The relative term ``Q Eᵀ`` is computed once per
distance (``[B, H, L, M]``, M = 2L − 1 or L) and *skewed* into ``[B, H, L, L]`` so that entry (i, j) reads
distance ``j − i`` — the only extra memory beyond the logits is the gathered ``E`` rows, O(L·D).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from core.ops._checks import check_finite, check_floating, check_rank, check_same
from core.ops.attention import attention_reference, validate_dense
from core.ops.backend import dispatch


def relative_distance_rows(rel_emb: Tensor, length: int, causal: bool) -> Tensor:
    """Rows of ``rel_emb`` ``[H, R, D]`` for the distances ``-(L-1) … 0`` (causal, M = L) or
    ``-(L-1) … L-1`` (bidirectional, M = 2L − 1), clipped to ±K: returns ``[H, M, D]``, O(L·D)."""
    max_rel = rel_emb.shape[-2] - 1 if causal else (rel_emb.shape[-2] - 1) // 2
    last = 0 if causal else length - 1
    distances = torch.arange(-(length - 1), last + 1, device=rel_emb.device)
    return rel_emb[:, distances.clamp(-max_rel, max_rel) + max_rel]


def skew(qe: Tensor, length: int) -> Tensor:
    """The skewing trick (§3.4.1): ``[B, H, L, M]`` indexed by distance → ``[B, H, L, L]`` indexed by key.

    Entry (i, j) must be column ``j − i + L − 1``; in a contiguous row-major buffer that is offset
    ``i·(M − 1) + j + L − 1``, so a strided view does the pad-reshape-slice of the paper with no copy.
    (For causal M = L the entries above the diagonal read the next row's data; they are masked.)
    """
    qe = qe.contiguous()
    batch, heads, _, m = qe.shape
    strides = (heads * length * m, length * m, m - 1, 1)
    return qe.as_strided((batch, heads, length, length), strides, storage_offset=length - 1)


def relative_logits(q: Tensor, rel_emb: Tensor, causal: bool) -> Tensor:
    """Unscaled relative term ``S_rel[b, h, i, j] = q_i · E[clip(j − i)]``, ``[B, H, L, L]``."""
    rows = relative_distance_rows(rel_emb, q.shape[-2], causal)
    return skew(torch.einsum("bhld,hmd->bhlm", q, rows), q.shape[-2])


def relative_attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    rel_emb: Tensor,
    causal: bool,
    mask: Tensor | None,
    scale: float,
) -> Tensor:
    """PyTorch path: skewed relative logits as an additive bias to SDPA."""
    bias = relative_logits(q, rel_emb, causal) * scale
    return attention_reference(q, k, v, mask=mask, bias=bias, causal=causal, scale=scale)


def relative_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    rel_emb: Tensor,
    *,
    causal: bool = False,
    mask: Tensor | None = None,
    scale: float | None = None,
    backend: str | None = None,
) -> Tensor:
    """Music Transformer relative self-attention.

    Args:
        q: ``[B, H, L, D]`` (self-attention: q, k and v share one length L).
        k: ``[B, H, L, D]``.
        v: ``[B, H, L, Dv]``.
        rel_emb: ``[H, R, D]`` per head or ``[R, D]`` shared. Row r holds distance ``r − K`` where
            K = max_relative_position: R = K + 1 rows for ``causal`` (distances −K…0), R = 2K + 1 for
            bidirectional (−K…K). Distances beyond ±K use the edge row (Shaw et al.'s clip); take
            K = L_max − 1 for the unclipped Music Transformer.
        causal: decoder self-attention (j ≤ i).
        mask: boolean, broadcastable to ``[B, H, L, L]``, True = may attend (e.g. key padding).
        scale: defaults to ``1/sqrt(D)``; it scales both terms, as in the paper.

    Returns ``[B, H, L, Dv]``.
    """
    validate_dense(q, k, v, mask, None)
    check_same(
        "query/key lengths (relative attention is self-attention)", q=q.shape[2], k=k.shape[2]
    )
    if rel_emb.dim() == 2:
        rel_emb = rel_emb.unsqueeze(0).expand(q.shape[1], -1, -1)
    check_rank("rel_emb", rel_emb, 3, "[H, R, D] or [R, D]")
    check_floating("rel_emb", rel_emb)
    check_same("heads", q=q.shape[1], rel_emb=rel_emb.shape[0])
    check_same("head dims", q=q.shape[3], rel_emb=rel_emb.shape[2])
    if not causal and rel_emb.shape[1] % 2 == 0:
        raise ValueError(
            f"bidirectional rel_emb needs an odd number of rows 2K+1, got R={rel_emb.shape[1]}"
        )
    check_finite("rel_emb", rel_emb)
    scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    return dispatch(
        "relative_attention", backend,
        q=q, k=k, v=v, rel_emb=rel_emb, causal=causal, mask=mask, scale=scale,
    )  # fmt: skip
