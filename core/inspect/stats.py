"""Per-head statistics of attention weights, aggregated over queries and instances.

Weights come in blocks ``[N, H, Lq, Lk]``: N instances (batch rows, packed segments, pooled bags),
H heads, Lq queries, Lk keys; masked keys hold weight 0. A query row counts only when it may see at
least one key. Per row:

- ``entropy`` ``−Σⱼ pⱼ log pⱼ`` (nats); ``normalized_entropy`` = entropy / log(allowed keys), over the
  rows with at least two allowed keys (1 = uniform over what the row may see, 0 = one key);
- ``effective_keys`` ``exp(entropy)``; ``top1_mass`` the largest weight; ``topk_mass`` the sum of the k
  largest; ``mean_distance`` ``Σⱼ pⱼ d(i, j)`` for a distance d (positions, or the app's coordinates).

Each is averaged over the rows of every recorded instance. Sinks are per instance: a key's mean weight
across the instance's rows; the instance's ``sink_score`` is the largest and ``sink_key`` its index.
Across instances the score is averaged and the key is the most frequent one.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import torch

TOP_K = 5
SINK_LINE = 0.5  # a head "has a sink" when some key gets at least half the weight on average

ROW_STATISTICS = (
    "entropy",
    "normalized_entropy",
    "effective_keys",
    "top1_mass",
    "topk_mass",
    "mean_distance",
)


@dataclass(frozen=True)
class HeadStatistics:
    """The statistics of one layer, one value per head (``[H]`` tensors; NaN where not measured,
    e.g. ``mean_distance`` for cross-attention or pooling; ``sink_key`` is −1 where no instance)."""

    entropy: torch.Tensor
    normalized_entropy: torch.Tensor
    effective_keys: torch.Tensor
    top1_mass: torch.Tensor
    topk_mass: torch.Tensor
    mean_distance: torch.Tensor
    sink_score: torch.Tensor
    sink_key: torch.Tensor
    top_k: int

    @property
    def n_heads(self) -> int:
        return self.entropy.numel()

    def rows(self, layer: str) -> list[tuple[str, int, str, float]]:
        """Tidy rows ``(layer, head, statistic, value)``; ``topk_mass`` is named ``top{k}_mass`` and
        values that were not measured (NaN) are left out."""
        rows = []
        for field in fields(self):
            if field.name == "top_k":
                continue
            name = f"top{self.top_k}_mass" if field.name == "topk_mass" else field.name
            for head, value in enumerate(getattr(self, field.name).tolist()):
                if not (isinstance(value, float) and math.isnan(value)):
                    rows.append((layer, head, name, value))
        return rows


def sink_fraction(statistics: Mapping[str, HeadStatistics], line: float = SINK_LINE) -> float:
    """Fraction of all heads (every layer) whose sink score is ≥ ``line``."""
    scores = [s.sink_score for s in statistics.values()]
    if not scores:
        return float("nan")
    return float((torch.cat(scores) >= line).double().mean())


def write_statistics_csv(statistics: Mapping[str, HeadStatistics], path: Path) -> Path:
    """Write the tidy table ``layer, head, statistic, value``, plus ``sink_fraction`` rows per layer
    and for the whole model (``head = all``; ``layer = all``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["layer", "head", "statistic", "value"])
        for layer, stats in statistics.items():
            writer.writerows(stats.rows(layer))
            writer.writerow([layer, "all", "sink_fraction", sink_fraction({layer: stats})])
        writer.writerow(["all", "all", "sink_fraction", sink_fraction(statistics)])
    return path


def top_k_mass(weights: torch.Tensor, k: int) -> torch.Tensor:
    """Sum of the k largest weights of each row: ``[..., Lk]`` → ``[...]``.

    Long rows are split into G groups of keys (key j in group ``j mod G``). Every one of the k largest
    weights lies in one of the k groups with the largest maxima (a key outside them is beaten by those
    k maxima), so a group maximum (a vectorised reduction over the strided layout), a top-k over the G
    maxima and a top-k over the k·Lk/G candidates replace a top-k over the whole row, with
    G ≈ √(k·Lk) balancing the two (~2× faster on the CPU at Lk = 1024, ~3× at 4096).
    """
    length = weights.shape[-1]
    k = min(k, length)
    if k == 1:
        return weights.amax(-1)
    size = 1 << max(2, round(math.log2(math.sqrt(length / k))))  # keys per group
    if length < 4 * k * size:
        return weights.topk(k, -1, sorted=False).values.sum(-1)
    whole = length - length % size
    groups = weights[..., :whole].unflatten(-1, (size, whole // size))  # [..., size, G]
    best = groups.amax(-2).topk(k, -1, sorted=False).indices  # [..., k]
    candidates = groups.gather(-1, best.unsqueeze(-2).expand(*best.shape[:-1], size, k))
    candidates = candidates.flatten(-2)  # [..., size·k]
    if whole < length:
        candidates = torch.cat([candidates, weights[..., whole:]], -1)
    return candidates.topk(k, -1, sorted=False).values.sum(-1)


def entropy_of(weights: torch.Tensor) -> torch.Tensor:
    """``−Σ p log p`` over the last dim (0·log 0 = 0): ``[..., Lk]`` → ``[...]``."""
    return -torch.special.xlogy(weights, weights).sum(-1)


def row_statistics(
    weights: torch.Tensor,
    top_k: int = TOP_K,
    *,
    entropy: torch.Tensor | None = None,
    top1: torch.Tensor | None = None,
    distance: torch.Tensor | None = None,
    scratch: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-row ``entropy``, ``top1_mass``, ``topk_mass`` and ``mean_distance`` of ``weights``
    ``[N, H, c, Lk]`` → ``[N, H, c]`` each.

    ``entropy`` and ``top1``: pass them when known already (from the softmax); ``distance``:
    ``d(i, j)`` broadcastable to the weights (None: no ``mean_distance``); ``scratch``: a buffer shaped
    like the weights that may be overwritten (saves an allocation).
    """
    rows = {
        "entropy": entropy_of(weights) if entropy is None else entropy,
        "top1_mass": weights.amax(-1) if top1 is None else top1,
        "topk_mass": top_k_mass(weights, top_k),
    }
    if distance is not None:
        product = (
            weights * distance if scratch is None else torch.mul(weights, distance, out=scratch)
        )
        rows["mean_distance"] = product.sum(-1)
    return rows


class StatisticsAccumulator:
    """Running sums (float64, per head) of the row statistics and the sinks of one layer.

    Feed it rows with :meth:`add_rows` and finished instances with :meth:`add_sinks`; :meth:`result`
    turns the sums into means.
    """

    def __init__(self, top_k: int = TOP_K) -> None:
        self.top_k = top_k
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, torch.Tensor] = {}
        self.sink_sum: torch.Tensor | None = None
        self.sink_instances: torch.Tensor | None = None
        self.sink_votes: torch.Tensor | None = None  # [H, keys]: how often each key was the sink

    def add_rows(self, rows: dict[str, torch.Tensor], n_allowed: torch.Tensor) -> None:
        """Add query rows: ``rows`` from :func:`row_statistics` (``[N, H, Lq]`` each; without
        ``mean_distance`` when not measured) and the allowed keys per row, broadcastable to
        ``[N, H, Lq]`` (rows with 0 are skipped)."""
        entropy = rows["entropy"]
        n_allowed = n_allowed.expand(entropy.shape)
        valid = n_allowed > 0
        for name, value in rows.items():
            self._add(name, value, valid)
        self._add("effective_keys", entropy.exp(), valid)
        log_keys = n_allowed.clamp_min(2).to(entropy.dtype).log()
        self._add("normalized_entropy", entropy / log_keys, n_allowed > 1)

    def _add(self, name: str, value: torch.Tensor, where: torch.Tensor) -> None:
        """Sum ``value`` ``[N, H, c]`` over the rows where ``where`` holds, per head."""
        total = torch.where(where, value, 0).sum((0, 2), dtype=torch.float64)
        count = where.sum((0, 2))
        if name in self.sums:
            self.sums[name] += total
            self.counts[name] += count
        else:
            self.sums[name], self.counts[name] = total, count

    def add_sinks(self, column_sums: torch.Tensor, rows: torch.Tensor) -> None:
        """Add finished instances: ``column_sums`` ``[N, H, Lk]`` = Σ over an instance's rows of each
        key's weight; ``rows`` ``[N, H]`` = how many rows (instances with none are skipped)."""
        present = rows > 0
        means = column_sums / rows.clamp_min(1).unsqueeze(-1).to(column_sums.dtype)
        score, key = means.max(-1)
        n_heads, n_keys, device = score.shape[1], column_sums.shape[-1], score.device
        if self.sink_sum is None:
            self.sink_sum = torch.zeros(n_heads, dtype=torch.float64, device=device)
            self.sink_instances = torch.zeros(n_heads, dtype=torch.long, device=device)
            self.sink_votes = torch.zeros(n_heads, 0, dtype=torch.long, device=device)
        self.sink_sum += torch.where(present, score, 0).sum(0, dtype=torch.float64)
        self.sink_instances += present.sum(0)
        if self.sink_votes.shape[1] < n_keys:
            grow = n_keys - self.sink_votes.shape[1]
            self.sink_votes = torch.nn.functional.pad(self.sink_votes, (0, grow))
        self.sink_votes.scatter_add_(1, key.T, present.T.long())

    def result(self) -> HeadStatistics:
        """Means per head, on the CPU (NaN where nothing was added)."""
        n_heads = next(iter(self.sums.values())).numel() if self.sums else 0

        def mean(name: str) -> torch.Tensor:
            if name not in self.sums:
                return torch.full((n_heads,), float("nan"), dtype=torch.float64)
            return (self.sums[name] / self.counts[name]).cpu()

        if self.sink_sum is None:
            sink_score = torch.full((n_heads,), float("nan"), dtype=torch.float64)
            sink_key = torch.full((n_heads,), -1)
        else:
            sink_score = (self.sink_sum / self.sink_instances).cpu()
            sink_key = torch.where(self.sink_instances > 0, self.sink_votes.argmax(1), -1).cpu()
        return HeadStatistics(
            **{name: mean(name) for name in ROW_STATISTICS},
            sink_score=sink_score,
            sink_key=sink_key,
            top_k=self.top_k,
        )


def head_statistics(
    weights: torch.Tensor,
    allowed: torch.Tensor | None = None,
    distance: torch.Tensor | None = None,
    top_k: int = TOP_K,
) -> HeadStatistics:
    """Statistics of a whole weight tensor ``[N, H, Lq, Lk]`` (each of the N rows one instance).

    ``allowed``: boolean broadcastable to ``[N, H, Lq, Lk]``, True = the query may see the key (None:
    every key); ``distance``: ``d(i, j)`` broadcastable to the same shape (None: not measured).
    """
    if weights.dim() != 4:
        raise ValueError(f"weights must be [N, H, Lq, Lk], got shape {tuple(weights.shape)}")
    n, h, lq, lk = weights.shape
    if allowed is None:
        n_allowed = torch.full((1, 1, lq), lk, device=weights.device)
    else:
        n_allowed = allowed.expand(n, h, lq, lk).sum(-1)
    accumulator = StatisticsAccumulator(top_k)
    accumulator.add_rows(row_statistics(weights, top_k, distance=distance), n_allowed)
    valid = (n_allowed > 0).expand(n, h, lq)
    accumulator.add_sinks((weights * valid.unsqueeze(-1)).sum(-2), valid.sum(-1))
    return accumulator.result()
