"""The paper's metrics (Vinyals et al. 2015, §4): per-instance records and their torchmetrics sums.

* convex hull — accuracy: the predicted cycle equals the true hull up to rotation (same orientation);
  area coverage: area of the predicted polygon / area of the true hull, where an invalid prediction
  (not closed, a repeated point, fewer than 3 points, or self-intersecting) counts as 0 — stricter than
  the paper, which reports such failures separately; we log them as ``invalid_rate`` too.
* delaunay — accuracy: the set of predicted triangles equals the true set; triangle coverage: the
  share of true triangles predicted (0 for an invalid output: a triangle with a repeated or unknown
  point, a triangle twice, or a length not a multiple of 3).
* tsp — average tour length of valid predictions vs the target tours (optimal for n ≤ 12, OR-Tools
  above), and the gap in % of the average target length; on TSPLIB instances, the gap to a reference
  tour length in the instance's own units (:func:`tsplib_summary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from apps.pointer.geometry import is_simple_polygon, polygon_area, tour_length
from apps.pointer.readers import TsplibInstance

Record = dict[str, float]


def same_cycle(a: np.ndarray, b: np.ndarray, reversible: bool = False) -> bool:
    """Whether open cycles ``a`` and ``b`` are equal up to rotation (and reversal if ``reversible``)."""
    if len(a) != len(b) or len(a) == 0:
        return False
    rotations = [np.roll(b, -k) for k in range(len(b))]
    if reversible:
        rotations += [r[::-1] for r in rotations]
    return any(np.array_equal(a, r) for r in rotations)


def closed_cycle(sequence: np.ndarray, n: int, all_points: bool) -> bool:
    """A closed sequence of distinct points in 1..n (every point once if ``all_points``)."""
    if len(sequence) < 4 or sequence[0] != sequence[-1]:
        return False
    cycle = sequence[:-1]
    if cycle.min() < 1 or cycle.max() > n or len(set(cycle.tolist())) != len(cycle):
        return False
    return len(cycle) == n if all_points else True


def hull_record(points: np.ndarray, prediction: np.ndarray, target: np.ndarray) -> Record:
    """Convex hull: ``valid`` (a closed simple polygon), ``correct``, area ``coverage``."""
    valid = closed_cycle(prediction, len(points), all_points=False)
    valid = valid and is_simple_polygon(points[prediction[:-1] - 1])
    coverage = 0.0
    if valid:
        coverage = polygon_area(points[prediction[:-1] - 1]) / polygon_area(points[target[:-1] - 1])
    correct = valid and same_cycle(prediction[:-1], target[:-1])
    return {"valid": float(valid), "correct": float(correct), "coverage": coverage}


def triangles(sequence: np.ndarray, n: int) -> set[tuple[int, ...]] | None:
    """The triangles of a Delaunay output over points 1..n, as sorted index triples; None when
    malformed (length not a multiple of 3, a point repeated or out of range, a triangle twice)."""
    if len(sequence) == 0 or len(sequence) % 3 or sequence.min() < 1 or sequence.max() > n:
        return None
    found = [tuple(sorted(t)) for t in sequence.reshape(-1, 3).tolist()]
    if any(len(set(t)) != 3 for t in found) or len(set(found)) != len(found):
        return None
    return set(found)


def delaunay_record(points: np.ndarray, prediction: np.ndarray, target: np.ndarray) -> Record:
    """Delaunay: ``valid`` (well-formed triangles), ``correct`` (same set), triangle ``coverage``."""
    predicted, true = triangles(prediction, len(points)), triangles(target, len(points))
    valid = predicted is not None
    hits = len(predicted & true) if valid else 0
    return {
        "valid": float(valid),
        "correct": float(valid and predicted == true),
        "coverage": hits / len(true),
    }


def tsp_record(points: np.ndarray, prediction: np.ndarray, target: np.ndarray) -> Record:
    """TSP: ``valid`` (every city once, closed), ``correct`` (the target tour, either direction),
    ``length`` (NaN when invalid) and ``target_length``."""
    valid = closed_cycle(prediction, len(points), all_points=True)
    return {
        "valid": float(valid),
        "correct": float(valid and same_cycle(prediction[:-1], target[:-1], reversible=True)),
        "length": tour_length(points, prediction) if valid else float("nan"),
        "target_length": tour_length(points, target),
    }


RECORDS = {"convex_hull": hull_record, "delaunay": delaunay_record, "tsp": tsp_record}


def score(
    problem: str,
    points: Sequence[np.ndarray],
    predictions: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
) -> list[Record]:
    """One record per instance (``points`` [n, 2], 1-based ``predictions``/``targets``)."""
    record = RECORDS[problem]
    return [record(p, y, t) for p, y, t in zip(points, predictions, targets, strict=True)]


class PointerMetrics(Metric):
    """The paper's metrics of one problem, accumulated as sums over instances.

    Every state is a sum (``dist_reduce_fx="sum"``), so under DDP the processes' sums are added before
    :meth:`compute` and the result equals one process seeing every instance. Counts are int64 (a
    float cast of the module never rounds them), sums float64.

    :meth:`compute` returns ``seq_acc`` and ``invalid_rate``, then ``area_coverage`` (convex hull),
    ``triangle_coverage`` (delaunay), or ``tour_length``, ``target_length`` and ``gap_pct`` (tsp;
    averages over the valid predictions). Values are NaN when there is nothing to average: no
    instance, or (the tsp lengths) no valid tour.
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, problem: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if problem not in RECORDS:
            raise ValueError(f"unknown problem {problem!r}; expected one of {tuple(RECORDS)}")
        self.problem = problem
        for count in ("instances", "valid", "correct"):
            self.add_state(count, default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        sums = ("length_sum", "target_length_sum") if problem == "tsp" else ("coverage_sum",)
        for total in sums:
            zero = torch.tensor(0.0, dtype=torch.float64)
            self.add_state(total, default=zero, dist_reduce_fx="sum")

    def update(
        self,
        points: Sequence[np.ndarray],
        predictions: Sequence[np.ndarray],
        targets: Sequence[np.ndarray],
    ) -> None:
        """Add instances: ``points`` [n, 2] each, 1-based ``predictions`` and ``targets``."""
        records = score(self.problem, points, predictions, targets)
        valid = [r for r in records if r["valid"]]
        self.instances += len(records)
        self.valid += len(valid)
        self.correct += int(sum(r["correct"] for r in records))
        if self.problem == "tsp":
            self.length_sum += sum(r["length"] for r in valid)
            self.target_length_sum += sum(r["target_length"] for r in valid)
        else:
            self.coverage_sum += sum(r["coverage"] for r in records)

    def compute(self) -> dict[str, torch.Tensor]:
        """Metric name → value (float32 scalars); 0/0 gives NaN."""
        instances = self.instances.double()
        summary = {
            "seq_acc": self.correct / instances,
            "invalid_rate": 1.0 - self.valid / instances,
        }
        if self.problem == "tsp":
            valid = self.valid.double()
            length, target = self.length_sum / valid, self.target_length_sum / valid
            summary.update(
                tour_length=length, target_length=target, gap_pct=100.0 * (length / target - 1.0)
            )
        else:
            name = "area_coverage" if self.problem == "convex_hull" else "triangle_coverage"
            summary[name] = self.coverage_sum / instances
        return {name: value.float() for name, value in summary.items()}


def tsplib_summary(
    instances: Sequence[TsplibInstance],
    predicted_tours: Sequence[np.ndarray],
    references: Sequence[float],
) -> dict[str, float]:
    """TSPLIB results in the instances' own units (nint length per edge), over the valid predicted
    tours (closed, 1-based, every city once): ``tsplib_length`` and ``tsplib_reference_length`` (their
    means) and ``tsplib_gap_pct`` (the mean of the per-instance gaps, so a large-coordinate instance
    does not outweigh the others). ``references`` are reference tour lengths, one per instance
    (:func:`apps.pointer.readers.tsplib_reference`). NaN when no tour is valid."""
    lengths, kept = [], []
    for instance, tour, reference in zip(instances, predicted_tours, references, strict=True):
        if closed_cycle(np.asarray(tour), len(instance.coords), all_points=True):
            lengths.append(instance.tour_length(tour))
            kept.append(reference)
    if not lengths:
        return dict.fromkeys(("tsplib_length", "tsplib_reference_length", "tsplib_gap_pct"), np.nan)
    length, reference = np.array(lengths, dtype=np.float64), np.array(kept, dtype=np.float64)
    return {
        "tsplib_length": float(length.mean()),
        "tsplib_reference_length": float(reference.mean()),
        "tsplib_gap_pct": float(100.0 * (length / reference - 1.0).mean()),
    }
