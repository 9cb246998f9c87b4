"""The calls of one batch of a pointer or pooling layer, whose weights come whole from the op.

Sinks need every query of an instance, and a pointer decoding brings them one step at a time: the
single-step calls on one ``keys`` tensor stay in one :class:`OpenSequence` until the keys change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.inspect.stats import StatisticsAccumulator, row_statistics


@dataclass
class OpenSequence:
    """Column sums and row counts (and kept weights) of the calls of one batch so far."""

    keys: torch.Tensor | None  # the keys a decoding runs on; None: a single call
    column_sums: torch.Tensor  # [N, H, Lk]
    rows: torch.Tensor  # [N, H]
    kept: list[torch.Tensor] | None  # [N, H, c, Lk] a call, when keeping weights
    calls: int = 0
    queries: int = 0

    @classmethod
    def empty(
        cls, keys: torch.Tensor | None, shape: torch.Size, device: torch.device, keep: bool
    ) -> OpenSequence:
        """A sequence for weights shaped ``[N, H, c, Lk]``."""
        n, h, _, len_k = shape
        return cls(
            keys,
            torch.zeros(n, h, len_k, device=device),
            torch.zeros(n, h, dtype=torch.long, device=device),
            [] if keep else None,
        )

    def add(
        self, statistics: StatisticsAccumulator, weights: torch.Tensor, n_allowed: torch.Tensor
    ) -> None:
        """Add one call's weights ``[N, H, c, Lk]`` (rows seeing ``n_allowed`` keys, broadcastable
        to ``[N, H, c]``) to the statistics and to the sequence."""
        statistics.add_rows(row_statistics(weights, statistics.top_k), n_allowed)
        self.column_sums += weights.sum(-2)
        self.rows += (n_allowed > 0).expand(weights.shape[:-1]).sum(-1)
        self.calls += 1
        self.queries += weights.shape[2]
        if self.kept is not None:
            self.kept.append(weights.float().cpu())

    def finish(
        self, statistics: StatisticsAccumulator, key_lengths: torch.Tensor | None = None
    ) -> list[torch.Tensor] | None:
        """Add the instances' sinks; return the kept weights per instance ``[H, queries, Lk]``
        (cropped to ``key_lengths``), or None when not keeping."""
        statistics.add_sinks(self.column_sums, self.rows)
        if self.kept is None:
            return None
        joined = torch.cat(self.kept, 2)
        if key_lengths is None:
            return list(joined.unbind(0))
        return [joined[i, ..., :n] for i, n in enumerate(key_lengths.tolist())]
