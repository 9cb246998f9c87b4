"""The paper's metrics (OAT) on object-level scanpaths: per-pair scores and their torchmetrics sums.

* SS, the sequence score: Needleman–Wunsch alignment of the two object sequences with similarity 1
  for equal objects, 0 otherwise, and gap 0 (so the score is their longest common subsequence), over
  the longer length — in ``[0, 1]``, 1 for equal sequences.
* Lev: the Levenshtein distance (unit insertion, deletion and substitution costs), reported raw
  (``Lev``, in edits) and over the longer length (``Lev_norm``, in ``[0, 1]``).
* MM: MultiMatch (:mod:`apps.scanpath.multimatch`) on the fixated objects' box centres in pixels,
  every fixation given the same duration (object scanpaths carry none), without simplification. The
  duration similarity is therefore always 1; it is reported but left out of ``MM``, the mean of
  shape, direction, length and position. MultiMatch needs 3 fixations: a pair where either scanpath
  is shorter is skipped (the reference gives NaN), an instance's MM is the mean over its remaining
  pairs, instances with none are left out of the MM averages, and ``MM_defined`` is the share of
  instances that have one.
* behaviour: per scanpath, ``found`` (the last fixation is on the target), ``length`` (fixations)
  and the shares of search, refixation and revisit fixations (:func:`behaviour`); Δ compares their
  means over the predictions with those over the humans (:func:`behaviour_delta`).

Protocol: each predicted scanpath is scored against every human scanpath of its scene and the scores
are averaged (one value per instance); reported values are means over instances. The human baseline
(:func:`human_consistency`) scores each human against the other humans of the same scene.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from apps.scanpath.multimatch import DIMENSIONS, multimatch

STATISTICS = ("found", "length", "search", "refix", "revisit")
"""The behavioural statistics of one scanpath, in the order the metric's states keep them."""

MM_DIMENSIONS = DIMENSIONS[:4]
"""The MultiMatch similarities averaged into ``MM`` (durations are not predicted)."""


def sequence_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Needleman–Wunsch score (match 1, mismatch 0, gap 0) of ``pred [L1]`` and ``truth [L2]`` over
    ``max(L1, L2)``; 0 when both are empty."""
    truth_list = truth.tolist()
    row = [0] * (len(truth_list) + 1)
    for p in pred.tolist():
        previous, row = row, [0]
        for j, t in enumerate(truth_list):
            row.append(max(previous[j] + (p == t), previous[j + 1], row[j]))
    longer = max(len(pred), len(truth))
    return row[-1] / longer if longer else 0.0


def levenshtein(pred: np.ndarray, truth: np.ndarray) -> int:
    """Edit distance between ``pred [L1]`` and ``truth [L2]`` (unit costs)."""
    truth_list = truth.tolist()
    row = list(range(len(truth_list) + 1))
    for i, p in enumerate(pred.tolist(), start=1):
        previous, row = row, [i]
        for j, t in enumerate(truth_list):
            row.append(min(previous[j] + (p != t), previous[j + 1] + 1, row[j] + 1))
    return row[-1]


def behaviour(sequence: np.ndarray, target: int) -> dict[str, float]:
    """The behavioural statistics of one object sequence ``[L]`` (L ≥ 1), keyed by :data:`STATISTICS`.

    Over runs of equal consecutive objects: a run on an object seen in an earlier run is a revisit,
    any other run a search; a run of k fixations adds k − 1 refixations. ``search``, ``refix`` and
    ``revisit`` are those counts over ``length`` (they sum to 1).
    """
    seen: set[int] = set()
    search = refix = revisit = 0
    for obj, run in itertools.groupby(sequence.tolist()):
        refix += len(list(run)) - 1
        revisit += obj in seen
        search += obj not in seen
        seen.add(obj)
    length = len(sequence)
    return {
        "found": float(sequence[-1] == target),
        "length": float(length),
        "search": search / length,
        "refix": refix / length,
        "revisit": revisit / length,
    }


def behaviour_delta(model_means: dict[str, float], human_means: dict[str, float]) -> float:
    """Δ: the mean over :data:`STATISTICS` of ``|model − human| / human`` (statistics already averaged
    over the test scanpaths). A statistic whose human mean is 0 (no revisits at all, say) has no
    relative error and is skipped; NaN when all are."""
    errors = [
        abs(model_means[s] - human_means[s]) / human_means[s]
        for s in STATISTICS
        if human_means[s] != 0
    ]
    return float(np.mean(errors)) if errors else math.nan


def object_fixations(sequence: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """MultiMatch input ``[L, 3]``: the objects' centres ``(x, y)`` from ``centres [N, 2]`` and a
    constant duration of 1."""
    points = np.asarray(centres, dtype=np.float64)[sequence]
    return np.concatenate([points, np.ones((len(sequence), 1))], axis=1)


def score_instance(
    pred: np.ndarray, humans: Sequence[np.ndarray], centres: np.ndarray, size: tuple[float, float]
) -> dict[str, float]:
    """One instance: ``SS``, ``Lev``, ``Lev_norm`` and the five ``MM_*`` of ``pred [L]`` averaged
    over ``humans`` (≥ 1); the ``MM_*`` average the pairs where MultiMatch is defined (NaN if none)."""
    if not humans:
        raise ValueError("an instance needs at least one human scanpath to compare with")
    edits = [levenshtein(pred, h) for h in humans]
    record = {
        "SS": float(np.mean([sequence_score(pred, h) for h in humans])),
        "Lev": float(np.mean(edits)),
        "Lev_norm": float(
            np.mean([e / max(len(pred), len(h)) for e, h in zip(edits, humans, strict=True)])
        ),
    }
    fixations = object_fixations(pred, centres)
    mm = [multimatch(fixations, object_fixations(h, centres), size) for h in humans]
    mm = [m for m in mm if not math.isnan(m["shape"])]
    for name in DIMENSIONS:
        record[f"MM_{name}"] = float(np.mean([m[name] for m in mm])) if mm else math.nan
    return record


def _statistics(sequence: np.ndarray, target: int) -> torch.Tensor:
    """float64 ``[5]``: :func:`behaviour` in :data:`STATISTICS` order."""
    stats = behaviour(sequence, target)
    return torch.tensor([stats[s] for s in STATISTICS], dtype=torch.float64)


class ScanpathMetrics(Metric):
    """SS, Levenshtein, MultiMatch and the behavioural statistics with Δ, as sums over instances.

    Every state is a sum (``dist_reduce_fx="sum"``), so under DDP the processes' sums add up to one
    process seeing every instance. Counts are int64, sums float64.

    :meth:`compute` returns ``SS``, ``Lev``, ``Lev_norm``, ``MM_shape``, ``MM_direction``,
    ``MM_length``, ``MM_position``, ``MM_duration``, ``MM`` (mean of the first four),
    ``MM_defined`` (share of instances with a MultiMatch value), the predictions' ``found``,
    ``length``, ``search``, ``refix``, ``revisit``, the same over the human scanpaths as
    ``human_found`` … ``human_revisit``, and ``delta`` (Δ). NaN where there is nothing to average.
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for count in ("instances", "mm_instances", "humans"):
            self.add_state(count, default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        sizes = {"ss_sum": (), "lev_sum": (), "lev_norm_sum": (), "mm_sum": (len(DIMENSIONS),)}
        sizes |= {"behaviour_sum": (len(STATISTICS),), "human_behaviour_sum": (len(STATISTICS),)}
        for name, shape in sizes.items():
            zero = torch.zeros(shape, dtype=torch.float64)
            self.add_state(name, default=zero, dist_reduce_fx="sum")

    def update(
        self,
        predictions: Sequence[np.ndarray],
        humans: Sequence[Sequence[np.ndarray]],
        targets: Sequence[int],
        centres: Sequence[np.ndarray],
        sizes: Sequence[tuple[float, float]],
    ) -> None:
        """Add instances: per instance a predicted object sequence ``[L]``, the human sequences of
        its scene (≥ 1), the target object, the objects' centres ``[N, 2]`` in pixels and the
        display's ``(width, height)``."""
        batch = zip(predictions, humans, targets, centres, sizes, strict=True)
        for pred, refs, target, points, size in batch:
            record = score_instance(pred, refs, points, size)
            self.instances += 1
            self.ss_sum += record["SS"]
            self.lev_sum += record["Lev"]
            self.lev_norm_sum += record["Lev_norm"]
            if not math.isnan(record["MM_shape"]):
                self.mm_instances += 1
                self.mm_sum += torch.tensor(
                    [record[f"MM_{d}"] for d in DIMENSIONS], dtype=torch.float64
                )
            self.behaviour_sum += _statistics(pred, target)
            self.human_behaviour_sum += sum(_statistics(h, target) for h in refs)
            self.humans += len(refs)

    def compute(self) -> dict[str, torch.Tensor]:
        """Metric name → value (float32 scalars); 0/0 gives NaN."""
        instances = self.instances.double()
        summary = {
            "SS": self.ss_sum / instances,
            "Lev": self.lev_sum / instances,
            "Lev_norm": self.lev_norm_sum / instances,
        }
        mm = self.mm_sum / self.mm_instances.double()
        summary |= {f"MM_{name}": mm[k] for k, name in enumerate(DIMENSIONS)}
        summary["MM"] = mm[: len(MM_DIMENSIONS)].mean()
        summary["MM_defined"] = self.mm_instances / instances
        model = self.behaviour_sum / instances
        human = self.human_behaviour_sum / self.humans.double()
        summary |= dict(zip(STATISTICS, model, strict=True))
        summary |= {f"human_{s}": v for s, v in zip(STATISTICS, human, strict=True)}
        delta = behaviour_delta(
            dict(zip(STATISTICS, model.tolist(), strict=True)),
            dict(zip(STATISTICS, human.tolist(), strict=True)),
        )
        summary["delta"] = torch.tensor(delta)
        return {name: value.float() for name, value in summary.items()}


def update_leave_one_out(
    metric: ScanpathMetrics,
    humans: Sequence[np.ndarray],
    target: int,
    centres: np.ndarray,
    size: tuple[float, float],
) -> None:
    """Add one scene's human consistency to ``metric``: each human scanpath is the prediction and the
    scene's *other* humans are the references (never itself). A scene with a single human has no one
    to compare with and adds nothing. The behavioural keys (``found`` …) then describe the left-out
    humans and ``human_*`` the references (each weighted by the number of others in its scene), so
    ``delta`` is the humans' own leave-one-out Δ."""
    for k, left_out in enumerate(humans):
        others = [h for j, h in enumerate(humans) if j != k]
        if others:
            metric.update([left_out], [others], [target], [centres], [size])
