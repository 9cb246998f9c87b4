"""The paper's metrics (Vinyals et al. 2015, §4): per-instance scores and their summary.

* convex hull — accuracy: the predicted cycle equals the true hull up to rotation (same orientation);
  area coverage: area of the predicted polygon / area of the true hull, where an invalid prediction
  (not closed, a repeated point, fewer than 3 points, or self-intersecting) counts as 0 — stricter than
  the paper, which reports such failures separately; we log them as ``invalid_rate`` too.
* delaunay — accuracy: the set of predicted triangles equals the true set; triangle coverage: the
  share of true triangles predicted.
* tsp — average tour length of valid predictions vs the target tours (optimal for n ≤ 12, OR-Tools
  above), and the gap in % of the average target length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from apps.pointer.geometry import is_simple_polygon, polygon_area, tour_length

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
    valid = closed_cycle(prediction, len(points), all_points=False)
    valid = valid and is_simple_polygon(points[prediction[:-1] - 1])
    coverage = 0.0
    if valid:
        coverage = polygon_area(points[prediction[:-1] - 1]) / polygon_area(points[target[:-1] - 1])
    correct = valid and same_cycle(prediction[:-1], target[:-1])
    return {"valid": float(valid), "correct": float(correct), "coverage": coverage}


def triangles(sequence: np.ndarray) -> set[tuple[int, ...]] | None:
    """The triangles of a Delaunay output, as sorted index triples; None when malformed."""
    if len(sequence) == 0 or len(sequence) % 3:
        return None
    found = [tuple(sorted(t)) for t in sequence.reshape(-1, 3).tolist()]
    if any(len(set(t)) != 3 for t in found):
        return None
    return set(found)


def delaunay_record(points: np.ndarray, prediction: np.ndarray, target: np.ndarray) -> Record:
    predicted, true = triangles(prediction), triangles(target)
    valid = predicted is not None
    hits = len(predicted & true) if valid else 0
    return {
        "valid": float(valid),
        "correct": float(valid and predicted == true),
        "coverage": hits / len(true),
    }


def tsp_record(points: np.ndarray, prediction: np.ndarray, target: np.ndarray) -> Record:
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


def summarize(problem: str, records: Sequence[Record]) -> dict[str, float]:
    """Metric name → value: ``seq_acc`` and ``invalid_rate`` always, then ``area_coverage``
    (convex hull), ``triangle_coverage`` (delaunay), or ``tour_length``, ``target_length`` and
    ``gap_pct`` (tsp; averages over the valid predictions)."""
    column = {key: np.array([r[key] for r in records]) for key in records[0]}
    summary = {
        "seq_acc": float(column["correct"].mean()),
        "invalid_rate": float(1.0 - column["valid"].mean()),
    }
    if problem == "convex_hull":
        summary["area_coverage"] = float(column["coverage"].mean())
    elif problem == "delaunay":
        summary["triangle_coverage"] = float(column["coverage"].mean())
    else:
        valid = column["valid"] > 0
        if valid.any():
            length = float(column["length"][valid].mean())
            target = float(column["target_length"][valid].mean())
            summary.update(
                tour_length=length, target_length=target, gap_pct=100.0 * (length / target - 1)
            )
    return summary
