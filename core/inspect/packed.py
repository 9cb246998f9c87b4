"""Packed segments (``cu_seqlens``) grouped by length and padded, so each group is one dense batch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

BUCKET = 16  # segments are padded to a multiple of this, in groups of similar length


@dataclass(frozen=True)
class SegmentBucket:
    """Segments of similar length padded to one width W.

    ``segments``: their indices ``[S]``; ``rows_q``/``rows_k``: the packed row of each padded slot
    ``[S, W]`` (0 in padding); ``valid_q``/``valid_k``: which slots are real ``[S, W]``.
    """

    segments: torch.Tensor
    rows_q: torch.Tensor
    rows_k: torch.Tensor
    valid_q: torch.Tensor
    valid_k: torch.Tensor


def segment_buckets(
    len_q: torch.Tensor, len_k: torch.Tensor, start_q: torch.Tensor, start_k: torch.Tensor
) -> Iterator[SegmentBucket]:
    """Group segments (query/key lengths and starts ``[N]``) by ``max(len_q, len_k)`` rounded up to
    16; segments without queries are skipped. Padding stays below 16 slots a segment, so the work
    tracks Σ Lᵢ² rather than N·Lmax²."""
    size = (torch.maximum(len_q, len_k) + BUCKET - 1) // BUCKET
    size = size.masked_fill(len_q == 0, 0)
    for width in (BUCKET * size[size > 0].unique()).tolist():
        segments = (size * BUCKET == width).nonzero().squeeze(1)
        slots = torch.arange(width, device=len_q.device)
        valid_q, valid_k = slots < len_q[segments, None], slots < len_k[segments, None]
        rows_q = torch.where(valid_q, start_q[segments, None] + slots, 0)
        rows_k = torch.where(valid_k, start_k[segments, None] + slots, 0)
        yield SegmentBucket(segments, rows_q, rows_k, valid_q, valid_k)
