"""Helpers for packed variable-length data: ``[T, ...]`` plus ``cu_seqlens`` (int32, ``[N+1]``)."""

from __future__ import annotations

import torch
from torch import Tensor


def segment_lengths(cu_seqlens: Tensor) -> Tensor:
    """Lengths ``[N]`` (int64) of the segments described by ``cu_seqlens`` ``[N+1]``."""
    return cu_seqlens.diff().long()


def segment_ids(cu_seqlens: Tensor, total: int) -> Tensor:
    """Segment index ``[T]`` (int64) of every packed token."""
    lengths = segment_lengths(cu_seqlens)
    ids = torch.arange(lengths.numel(), device=cu_seqlens.device)
    return torch.repeat_interleave(ids, lengths, output_size=total)


def pad_segments(x: Tensor, cu_seqlens: Tensor) -> tuple[Tensor, Tensor]:
    """Scatter packed ``x`` ``[T, ...]`` into zero-padded ``[N, Lmax, ...]``; also return the validity
    mask ``[N, Lmax]`` (True = a real token). Differentiable in ``x``."""
    lengths = segment_lengths(cu_seqlens)
    n, max_len = lengths.numel(), int(lengths.max()) if lengths.numel() else 0
    seg = segment_ids(cu_seqlens, x.shape[0])
    pos = torch.arange(x.shape[0], device=x.device) - cu_seqlens.long()[seg]
    padded = x.new_zeros((n, max_len, *x.shape[1:]))
    padded = padded.index_put((seg, pos), x)
    valid = torch.arange(max_len, device=x.device) < lengths[:, None]
    return padded, valid


def unpad_segments(padded: Tensor, valid: Tensor) -> Tensor:
    """Inverse of :func:`pad_segments`: ``[N, Lmax, ...]`` back to packed ``[T, ...]``."""
    return padded[valid]
