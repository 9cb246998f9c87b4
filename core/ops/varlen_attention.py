"""Variable-length softmax attention over packed sets (DSVT windows, OAT object sets, …).

Tokens of all segments are packed ``[T, H, D]``; ``cu_seqlens`` (int32 ``[N+1]``, the FlashAttention
varlen convention) marks where each segment starts, so sets of different sizes need no padding and a token
attends only within its own segment.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from core.ops._checks import (
    check_attention_inputs,
    check_cu_seqlens,
    check_same,
    value_checks_enabled,
)
from core.ops.backend import dispatch

BUCKET_WIDTH = 16


def varlen_attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    cu_seqlens: Tensor,
    cu_seqlens_k: Tensor | None,
    causal: bool,
    scale: float,
) -> Tensor:
    """PyTorch path: segments are grouped into buckets of similar length (multiples of 16) and each
    bucket runs as one dense SDPA call with a key mask.

    Padding stays within a bucket (≤ 15 tokens a segment), so the cost tracks Σ Lᵢ² rather than N·Lmax²;
    on the CPU this beats both jagged nested tensors (no fused CPU kernel, no causal) and a Python loop
    per segment (slow backward). Forward and backward are plain autograd.
    """
    cu_k = cu_seqlens if cu_seqlens_k is None else cu_seqlens_k
    len_q, len_k = cu_seqlens.diff().long(), cu_k.diff().long()
    start_q, start_k = cu_seqlens[:-1].long(), cu_k[:-1].long()
    bucket = (torch.maximum(len_q, len_k) + BUCKET_WIDTH - 1) // BUCKET_WIDTH
    bucket = bucket.masked_fill(len_q == 0, 0)  # segments without queries produce nothing
    plans = []  # per bucket: (segments, padded length, query slots, key slots, key mask, real queries)
    for size in bucket[bucket > 0].unique().tolist():
        seg = (bucket == size).nonzero().squeeze(1)
        pos = torch.arange(size * BUCKET_WIDTH, device=q.device)
        valid_q, valid_k = pos < len_q[seg, None], pos < len_k[seg, None]  # [S, Lb]
        keep = valid_k[:, None, None, :]  # [S, 1, 1, Lb]
        if causal:
            keep = keep & (pos[None, :] <= pos[:, None])
        slots_q = torch.where(valid_q, start_q[seg, None] + pos, 0).flatten()
        slots_k = torch.where(valid_k, start_k[seg, None] + pos, 0).flatten()
        plans.append((len(seg), len(pos), slots_q, slots_k, keep, valid_q.flatten()))
    if not plans:
        return q.new_zeros(q.shape[0], q.shape[1], v.shape[2])

    # One gather per input for all buckets (one scatter-add each in the backward), then views.
    def gather(x: Tensor, slots: list[Tensor]) -> tuple[Tensor, ...]:
        rows = x.index_select(0, torch.cat(slots))  # [Σ S·Lb, H, D]
        return rows.split([len(s) for s in slots])

    qs = gather(q, [p[2] for p in plans])
    ks, vs = (gather(x, [p[3] for p in plans]) for x in (k, v))
    outs, owners = [], []
    for (n_seg, length, slots_q, _, keep, real), *rows in zip(plans, qs, ks, vs, strict=True):
        q_b, k_b, v_b = (x.view(n_seg, length, *x.shape[1:]).transpose(1, 2) for x in rows)
        out_b = F.scaled_dot_product_attention(q_b, k_b, v_b, attn_mask=keep, scale=scale)
        outs.append(out_b.transpose(1, 2).reshape(n_seg * length, *out_b.shape[1:2], -1)[real])
        owners.append(slots_q[real])
    # Every query token sits in exactly one bucket: undo the bucket order with one permutation.
    return torch.cat(outs).index_select(0, torch.argsort(torch.cat(owners)))


def varlen_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    cu_seqlens: Tensor,
    *,
    cu_seqlens_k: Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    backend: str | None = None,
) -> Tensor:
    """Softmax attention within each packed segment.

    Args:
        q: ``[T, H, D]``; k: ``[Tk, H, D]``; v: ``[Tk, H, Dv]``.
        cu_seqlens: int32 ``[N+1]`` offsets into q (and into k/v unless ``cu_seqlens_k`` is given);
            starts at 0, non-decreasing, ends at T. Empty segments are allowed.
        cu_seqlens_k: offsets into k/v for cross-attention between paired segments.
        causal: within a segment, query i sees keys j ≤ i (needs ``cu_seqlens_k`` equal to
            ``cu_seqlens``).
        scale: defaults to ``1/sqrt(D)``.

    Returns ``[T, H, Dv]``.
    """
    check_attention_inputs(q, k, v, "[T, H, D]", length_dim=0)
    check_cu_seqlens(cu_seqlens, q.shape[0])
    if cu_seqlens_k is None:
        check_same(
            "packed lengths (pass cu_seqlens_k for cross-attention)", q=q.shape[0], k=k.shape[0]
        )
    else:
        check_cu_seqlens(cu_seqlens_k, k.shape[0], "cu_seqlens_k")
        check_same(
            "segment counts", cu_seqlens=cu_seqlens.numel(), cu_seqlens_k=cu_seqlens_k.numel()
        )
        if (
            causal
            and value_checks_enabled(cu_seqlens)
            and not torch.equal(cu_seqlens.long(), cu_seqlens_k.long())
        ):
            raise ValueError("causal varlen attention needs cu_seqlens_k equal to cu_seqlens")
    scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    return dispatch(
        "varlen_attention", backend,
        q=q, k=k, v=v, cu_seqlens=cu_seqlens, cu_seqlens_k=cu_seqlens_k, causal=causal, scale=scale,
    )  # fmt: skip
