"""What ``mode="weights"`` keeps, and the limits that bound it."""

from __future__ import annotations

from dataclasses import dataclass

import torch


class WeightLimitError(RuntimeError):
    """Raised when ``mode="weights"`` would keep more than its :class:`WeightLimits` allow."""


@dataclass(frozen=True)
class WeightLimits:
    """What ``mode="weights"`` may keep (memory: Σ N·H·Lq·Lk·4 bytes over the kept batches).

    Args:
        max_batches: forward batches kept per layer; a run of single-step calls on the same keys (a
            pointer decoding) counts as one.
        max_queries: queries per instance (after joining decoding steps).
        max_layers: layers with kept weights.
    """

    max_batches: int = 8
    max_queries: int = 4096
    max_layers: int = 64


@dataclass
class AttentionBatch:
    """The kept weights of one forward batch of one layer.

    ``weights``: one fp32 CPU tensor ``[H, Lq, Lk]`` per instance (batch row, packed segment, pooled bag
    as ``[K, 1, n]``, pointer row as ``[1, steps, N + 1]``), masked keys 0. ``steps``: forward calls
    joined into it (decoding steps; 1 for a whole-sequence call). ``batch_index``: index into
    :attr:`Recording.batches` of the inputs it came from (None when none was given).
    """

    weights: list[torch.Tensor]
    steps: int
    batch_index: int | None


def check_limits(
    limits: WeightLimits,
    layer: str,
    kept_batches: int,
    kept_layers: int,
    queries: int,
    new_batch: bool = True,
) -> None:
    """Raise :class:`WeightLimitError` if keeping a batch of ``queries`` queries per instance for
    ``layer`` (which keeps ``kept_batches`` already; ``kept_layers`` layers keep some) breaks a limit."""
    hint = "mode='weights' keeps every weight: raise the limit, record fewer or shorter batches, "
    hint += "or use mode='stats'"
    if queries > limits.max_queries:
        raise WeightLimitError(
            f"layer {layer!r}: {queries} queries per instance exceed "
            f"WeightLimits.max_queries={limits.max_queries} ({hint})"
        )
    if new_batch and kept_batches >= limits.max_batches:
        raise WeightLimitError(
            f"layer {layer!r}: batch {kept_batches + 1} exceeds "
            f"WeightLimits.max_batches={limits.max_batches} ({hint})"
        )
    if new_batch and not kept_batches and kept_layers >= limits.max_layers:
        raise WeightLimitError(
            f"layer {layer!r} would be layer {kept_layers + 1} with kept weights, more than "
            f"WeightLimits.max_layers={limits.max_layers} ({hint})"
        )
