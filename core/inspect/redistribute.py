"""Attention redistribution away from sink keys, at inference and without retraining.

The visual attention redistribution (VAR) of Kang et al. 2025 ("See What You Are Told: Visual Attention
Sink in Large Multimodal Models", §4) takes part of the attention that sink tokens soak up and gives it
back to the other tokens in proportion to their attention. Here the same operation applies to any
recorded layer: sinks are given keys (a CLS/EOS position) or are found from the weights themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

import torch

from core.inspect.stats import SINK_LINE


@dataclass(frozen=True)
class Redistribution:
    """Which heads give back which share of their sink weight.

    For a chosen head, a query row with weights w and sink keys S becomes
    ``w'ⱼ = (1 − p)·wⱼ`` for j ∈ S and ``w'ⱼ = wⱼ·(1 + p·Σ_S w / Σ_{not S} w)`` for the other keys: the
    row still sums to 1, exactly p of the sink weight moves, masked keys (weight 0) stay at 0, and a row
    with no weight outside S is left as it is.

    Args:
        fraction: p in [0, 1].
        heads: layer name (an ``fnmatch`` pattern, e.g. ``"encoder.layers.*.self_attn"``) → the head
            indices to change; None changes every head of every recorded layer.
        sink_keys: key indices that are sinks, counted within an instance (batch row, packed segment,
            pooled bag; for the pointer, 0 is EOS); None: detect, per instance and head, the keys whose
            mean weight across the queries of the forward is at least ``sink_threshold``.
        sink_threshold: detection threshold on that mean weight.
    """

    fraction: float
    heads: Mapping[str, Sequence[int]] | None = None
    sink_keys: Sequence[int] | None = None
    sink_threshold: float = SINK_LINE

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {self.fraction}")
        if not 0.0 < self.sink_threshold <= 1.0:
            raise ValueError(f"sink_threshold must be in (0, 1], got {self.sink_threshold}")

    def chosen_heads(self, layer: str, n_heads: int) -> torch.Tensor | None:
        """Boolean ``[H]`` of the heads of ``layer`` to change, or None when there is nothing to do."""
        if self.fraction == 0.0:
            return None
        if self.heads is None:
            return torch.ones(n_heads, dtype=torch.bool)
        chosen = torch.zeros(n_heads, dtype=torch.bool)
        for pattern, heads in self.heads.items():
            if fnmatchcase(layer, pattern):
                for head in heads:
                    if not 0 <= head < n_heads:
                        raise ValueError(
                            f"redistribution head {head} for {pattern!r} does not exist: layer "
                            f"{layer!r} has {n_heads} heads"
                        )
                    chosen[head] = True
        return chosen if bool(chosen.any()) else None

    def sinks(
        self, heads: torch.Tensor, n_keys: int, column_means: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Boolean sink mask ``[N|1, H, 1, Lk]`` for the chosen ``heads`` ``[H]``: the given
        ``sink_keys``, or the keys whose ``column_means`` ``[N, H, Lk]`` reach the threshold."""
        heads = heads.to(column_means.device if column_means is not None else "cpu")
        if self.sink_keys is None:
            if column_means is None:
                raise ValueError("sink detection needs the column means of the weights")
            return ((column_means >= self.sink_threshold) & heads[:, None]).unsqueeze(2)
        keys = torch.zeros(n_keys, dtype=torch.bool, device=heads.device)
        keys[[key for key in self.sink_keys if 0 <= key < n_keys]] = True
        return (heads[:, None] & keys)[None, :, None, :]


def redistribute(weights: torch.Tensor, sink: torch.Tensor, fraction: float) -> torch.Tensor:
    """Move ``fraction`` of each row's weight on ``sink`` keys to its other keys, pro rata.

    Args:
        weights: ``[..., Lk]`` rows summing to 1 (all-zero rows stay zero).
        sink: boolean broadcastable to ``weights``, True = sink key.
        fraction: p in [0, 1].

    Returns the new weights (same shape); see :class:`Redistribution` for the formula.
    """
    on_sinks = torch.where(sink, weights, 0)
    sink_mass = on_sinks.sum(-1, keepdim=True)
    other_mass = (weights - on_sinks).sum(-1, keepdim=True)
    movable = other_mass > 0
    gain = torch.where(movable, fraction * sink_mass / other_mass.clamp_min(1e-30), 0)
    keep = torch.where(movable, 1.0 - fraction, 1.0)
    return weights * torch.where(sink, keep, 1.0 + gain)
