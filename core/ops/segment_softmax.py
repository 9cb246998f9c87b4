"""Softmax and attention pooling over the instances of packed bags (ABMIL, Ilse et al. 2018; ACMIL).

A bag (a slide's patches, a user's items) is a segment of a packed ``[T, ...]`` tensor given by
``cu_seqlens``; the softmax normalises the instance scores within each bag, so bags of any size share one
batch with no padding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from core.ops._checks import check_cu_seqlens, check_finite, check_floating, check_rank, check_same
from core.ops._segments import pad_segments, segment_ids
from core.ops.backend import dispatch


def segment_softmax_reference(scores: Tensor, cu_seqlens: Tensor, mask: Tensor | None) -> Tensor:
    """PyTorch path: per-segment max (``scatter_reduce``), exp, per-segment sum (``index_add``)."""
    seg = segment_ids(cu_seqlens, scores.shape[0])
    n = cu_seqlens.numel() - 1
    index = seg.view(-1, *([1] * (scores.dim() - 1))).expand_as(scores)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    seg_max = scores.new_full((n, *scores.shape[1:]), float("-inf"))
    seg_max = seg_max.scatter_reduce(0, index, scores.detach(), "amax", include_self=True)
    seg_max = seg_max.nan_to_num(neginf=0.0)  # segments with no visible instance
    exp = (scores - seg_max[seg]).exp()
    seg_sum = exp.new_zeros(seg_max.shape).index_add(0, seg, exp)
    return exp / seg_sum.clamp_min(torch.finfo(exp.dtype).tiny)[seg]


def _validate_scores(scores: Tensor, cu_seqlens: Tensor, mask: Tensor | None) -> None:
    if scores.dim() < 1:
        raise ValueError("scores must be [T] or [T, ...], got a scalar")
    check_floating("scores", scores)
    check_finite("scores", scores)
    check_cu_seqlens(cu_seqlens, scores.shape[0])
    if mask is not None and (mask.dtype != torch.bool or mask.shape != scores.shape):
        raise ValueError(
            f"mask must be boolean with the shape of scores {tuple(scores.shape)}, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )


def segment_softmax(
    scores: Tensor,
    cu_seqlens: Tensor,
    *,
    mask: Tensor | None = None,
    backend: str | None = None,
) -> Tensor:
    """Softmax of ``scores`` ``[T, ...]`` within each segment of ``cu_seqlens`` (int32 ``[N+1]``).

    ``mask`` (boolean, shape of ``scores``, True = keep) hides instances, e.g. ACMIL's stochastic top-K
    masking; a segment with no visible instance gets all-zero weights. Returns ``[T, ...]``.
    """
    _validate_scores(scores, cu_seqlens, mask)
    return dispatch("segment_softmax", backend, scores=scores, cu_seqlens=cu_seqlens, mask=mask)


def attention_pool_reference(
    scores: Tensor,
    values: Tensor,
    cu_seqlens: Tensor,
    mask: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """PyTorch path: segment softmax, then the weighted sums. Values shared by the branches
    (``[T, 1, D]``) are pooled as one matrix product per bag, ``weightsᵀ [K, n] @ values [n, D]``
    (the bags zero-padded to one batched product when there are several), never forming the
    ``[T, K, D]`` products; per-branch values ``[T, K, D]`` take one ``index_add``."""
    weights = segment_softmax_reference(scores, cu_seqlens, mask)
    if values.shape[1] == 1:
        return _pool_shared(weights, values[:, 0], cu_seqlens), weights
    seg = segment_ids(cu_seqlens, scores.shape[0])
    pooled = values.new_zeros(cu_seqlens.numel() - 1, scores.shape[1], values.shape[-1])
    pooled = pooled.index_add(0, seg, weights.unsqueeze(-1) * values)
    return pooled, weights


def _pool_shared(weights: Tensor, values: Tensor, cu_seqlens: Tensor) -> Tensor:
    """``[N, K, D]``: each bag's ``weightsᵀ @ values`` for ``weights [T, K]``, ``values [T, D]``."""
    if cu_seqlens.numel() == 2:  # one bag: no padding needed
        return (weights.transpose(0, 1) @ values).unsqueeze(0)
    padded_weights, _ = pad_segments(weights, cu_seqlens)  # [N, L, K], zeros past each bag
    padded_values, _ = pad_segments(values, cu_seqlens)  # [N, L, D]
    return padded_weights.transpose(1, 2) @ padded_values


def attention_pool(
    scores: Tensor,
    values: Tensor,
    cu_seqlens: Tensor,
    *,
    mask: Tensor | None = None,
    backend: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Attention-based MIL pooling: ``z_n = Σ_{t ∈ bag n} a_t h_t`` with ``a = segment_softmax(scores)``.

    Args:
        scores: ``[T, K]`` — one score per instance and attention branch (K = 1 for ABMIL).
        values: ``[T, D]`` instance embeddings shared by all branches, or ``[T, K, D]`` per branch.
        cu_seqlens: int32 ``[N+1]`` bag offsets.
        mask: boolean ``[T, K]``, True = instance may be attended.

    Returns (pooled ``[N, K, D]``, weights ``[T, K]``).
    """
    check_rank("scores", scores, 2, "[T, K]")
    _validate_scores(scores, cu_seqlens, mask)
    check_floating("values", values)
    check_finite("values", values)
    if values.dim() == 2:
        values = values.unsqueeze(1)
    check_rank("values", values, 3, "[T, D] or [T, K, D]")
    check_same("instance counts", scores=scores.shape[0], values=values.shape[0])
    if values.shape[1] not in (1, scores.shape[1]):
        raise ValueError(f"values has {values.shape[1]} branches, scores {scores.shape[1]}")
    return dispatch(
        "attention_pool", backend, scores=scores, values=values, cu_seqlens=cu_seqlens, mask=mask
    )
