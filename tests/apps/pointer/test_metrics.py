"""The paper's metrics on hand-checked examples, and PointerMetrics = the per-instance records summed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from apps.pointer.generate import generate
from apps.pointer.metrics import PointerMetrics, delaunay_record, hull_record, score, tsp_record

# a unit square (1..4, counter-clockwise) and one point inside it (5)
SQUARE_AND_INSIDE = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.3, 0.6]])
SQUARE_HULL = np.array([1, 2, 3, 4, 1])


@pytest.mark.parametrize(
    ("prediction", "valid", "correct", "coverage"),
    [
        ([1, 2, 3, 4, 1], True, True, 1.0),
        ([3, 4, 1, 2, 3], True, True, 1.0),  # the same cycle from another start
        ([1, 4, 3, 2, 1], True, False, 1.0),  # clockwise: the right polygon, the wrong sequence
        ([1, 2, 3, 1], True, False, 0.5),  # half the square
        ([1, 2, 3, 5, 4, 1], True, False, 0.8),  # notch (1,1)-(0.3,0.6)-(0,1): area 0.2 cut away
        ([1, 3, 2, 4, 1], False, False, 0.0),  # a bow tie: its diagonals cross
        ([1, 2, 3, 4], False, False, 0.0),  # not closed
        ([1, 2, 1, 3, 1], False, False, 0.0),  # point 1 twice inside the cycle
        ([1, 2, 1], False, False, 0.0),  # fewer than 3 points
    ],
)
def test_hull_record(prediction, valid, correct, coverage):
    record = hull_record(SQUARE_AND_INSIDE, np.array(prediction), SQUARE_HULL)
    assert record["valid"] == valid and record["correct"] == correct
    assert record["coverage"] == pytest.approx(coverage)


# point 3 lies inside the triangle (1, 2, 4): the only triangulation joins it to the three corners
TRIANGLE_AND_INSIDE = np.array([[0, 0], [4, 0], [2, 1], [2, 3]])
TRIANGLE_DELAUNAY = np.array([1, 2, 3, 1, 3, 4, 2, 3, 4])


@pytest.mark.parametrize(
    ("prediction", "valid", "correct", "coverage"),
    [
        ([4, 3, 2, 3, 1, 2, 1, 4, 3], True, True, 1.0),  # any triangle order, any vertex order
        ([1, 2, 3, 2, 3, 4], True, False, 2 / 3),
        ([1, 2, 4, 3, 2, 1], True, False, 1 / 3),  # (1, 2, 4) is not a Delaunay triangle
        ([1, 2, 3, 3, 2, 1, 1, 3, 4], False, False, 0.0),  # a triangle twice
        ([1, 1, 2], False, False, 0.0),  # a repeated corner
        ([1, 2, 5], False, False, 0.0),  # no point 5
        ([1, 2, 3, 4], False, False, 0.0),  # not whole triangles
        ([], False, False, 0.0),
    ],
)
def test_delaunay_record(prediction, valid, correct, coverage):
    record = delaunay_record(
        TRIANGLE_AND_INSIDE, np.array(prediction, dtype=int), TRIANGLE_DELAUNAY
    )
    assert record["valid"] == valid and record["correct"] == correct
    assert record["coverage"] == pytest.approx(coverage)


SQUARE = SQUARE_AND_INSIDE[:4]
BOW_TIE_LENGTH = 2 + 2 * math.sqrt(2)  # 1 → 3 → 2 → 4 → 1: two sides and two diagonals


def test_tsp_record_on_a_square():
    optimal = tsp_record(SQUARE, np.array([1, 4, 3, 2, 1]), SQUARE_HULL)  # reversed: still optimal
    assert optimal == {"valid": 1.0, "correct": 1.0, "length": 4.0, "target_length": 4.0}
    crossing = tsp_record(SQUARE, np.array([1, 3, 2, 4, 1]), SQUARE_HULL)
    assert crossing["valid"] == 1.0 and crossing["correct"] == 0.0
    assert crossing["length"] == pytest.approx(BOW_TIE_LENGTH)
    for missing_a_city in ([1, 2, 3, 1], [1, 2, 3, 4], [1, 2, 2, 4, 1]):
        record = tsp_record(SQUARE, np.array(missing_a_city), SQUARE_HULL)
        assert record["valid"] == 0.0 and math.isnan(record["length"])


def test_tsp_metric_gap_on_a_square():
    metric = PointerMetrics("tsp")
    predictions = [np.array([1, 4, 3, 2, 1]), np.array([1, 3, 2, 4, 1]), np.array([1, 2, 3, 1])]
    metric.update([SQUARE] * 3, predictions, [SQUARE_HULL] * 3)
    result = {name: value.item() for name, value in metric.compute().items()}
    mean_valid_length = (4 + BOW_TIE_LENGTH) / 2  # the invalid third tour is left out
    assert result == pytest.approx(
        {
            "seq_acc": 1 / 3,
            "invalid_rate": 1 / 3,
            "tour_length": mean_valid_length,
            "target_length": 4.0,
            "gap_pct": 100 * (mean_valid_length / 4 - 1),  # = 25 (√2 − 1) ≈ 10.36 %
        }
    )


def test_hull_and_delaunay_metrics_on_hand_examples():
    hull = PointerMetrics("convex_hull")
    hull.update(
        [SQUARE_AND_INSIDE] * 3,
        [np.array([2, 3, 4, 1, 2]), np.array([1, 2, 3, 1]), np.array([1, 3, 2, 4, 1])],
        [SQUARE_HULL] * 3,
    )
    assert {k: v.item() for k, v in hull.compute().items()} == pytest.approx(
        {"seq_acc": 1 / 3, "invalid_rate": 1 / 3, "area_coverage": (1 + 0.5 + 0) / 3}
    )
    delaunay = PointerMetrics("delaunay")
    delaunay.update(
        [TRIANGLE_AND_INSIDE] * 2,
        [TRIANGLE_DELAUNAY[::-1].copy(), np.array([1, 2, 3])],
        [TRIANGLE_DELAUNAY] * 2,
    )
    assert {k: v.item() for k, v in delaunay.compute().items()} == pytest.approx(
        {"seq_acc": 1 / 2, "invalid_rate": 0.0, "triangle_coverage": (1 + 1 / 3) / 2}
    )


def noisy_predictions(problem: str, count: int, seed: int):
    """Generated instances and predictions that are right, rotated, shuffled or cut short."""
    points, targets = generate(problem, (4, 8), count, seed=seed)
    rng = np.random.default_rng(seed)
    predictions = []
    for target in targets:
        kind = rng.integers(4)
        if kind == 0:
            predictions.append(target.copy())
        elif kind == 1 and problem != "delaunay":  # the same closed cycle from its second point
            predictions.append(np.append(target[1:], target[1]))
        elif kind == 2:
            predictions.append(rng.permutation(target))
        else:
            predictions.append(target[: len(target) - 1])
    return points, predictions, targets


@pytest.mark.parametrize("problem", ["convex_hull", "delaunay", "tsp"])
def test_metric_equals_mean_of_records(problem):
    points, predictions, targets = noisy_predictions(problem, 40, seed=7)
    metric = PointerMetrics(problem)
    for start in range(0, 40, 16):  # batches of 16, 16, 8
        end = start + 16
        metric.update(points[start:end], predictions[start:end], targets[start:end])
    result = metric.compute()
    records = score(problem, points, predictions, targets)
    valid = np.array([r["valid"] for r in records]) > 0
    assert 0 < valid.sum() < len(records)  # the example mixes valid and invalid outputs
    expected = {
        "seq_acc": np.mean([r["correct"] for r in records]),
        "invalid_rate": 1 - valid.mean(),
    }
    if problem == "tsp":
        length = np.mean([r["length"] for r in records if r["valid"]])
        target = np.mean([r["target_length"] for r in records if r["valid"]])
        expected |= {"tour_length": length, "target_length": target}
        expected["gap_pct"] = 100 * (length / target - 1)
    else:
        name = "area_coverage" if problem == "convex_hull" else "triangle_coverage"
        expected[name] = np.mean([r["coverage"] for r in records])
    assert set(result) == set(expected)
    for name, value in expected.items():
        assert result[name].item() == pytest.approx(value, rel=1e-6), name


@pytest.mark.parametrize("problem", ["convex_hull", "delaunay", "tsp"])
def test_merged_halves_equal_the_whole(problem):
    """What DDP does: each process sums its share; the sums are added before compute."""
    points, predictions, targets = noisy_predictions(problem, 30, seed=11)
    whole, first, second = (PointerMetrics(problem) for _ in range(3))
    whole.update(points, predictions, targets)
    first.update(points[:13], predictions[:13], targets[:13])
    second.update(points[13:], predictions[13:], targets[13:])
    first.merge_state(second)
    merged, expected = first.compute(), whole.compute()
    assert set(merged) == set(expected)
    for name in expected:
        torch.testing.assert_close(merged[name], expected[name])
    assert first.instances.item() == 30


@pytest.mark.parametrize("problem", ["convex_hull", "delaunay", "tsp"])
def test_distributed_sync_adds_the_processes_states(problem):
    """torchmetrics' own sync path, with a stand-in all-gather that returns this process's state
    and a second process's (``other``), as ``torch.distributed.all_gather`` would under DDP."""
    points, predictions, targets = noisy_predictions(problem, 30, seed=13)
    other, whole = PointerMetrics(problem), PointerMetrics(problem)

    def all_gather(state: torch.Tensor, group=None) -> list[torch.Tensor]:
        return [state, other.metric_state[state_names[id(state)]]]

    this = PointerMetrics(problem, dist_sync_fn=all_gather, distributed_available_fn=lambda: True)
    state_names = {id(state): name for name, state in this.metric_state.items()}
    this.update(points[:10], predictions[:10], targets[:10])
    other.update(points[10:], predictions[10:], targets[10:])
    whole.update(points, predictions, targets)
    synced, expected = this.compute(), whole.compute()
    for name in expected:
        torch.testing.assert_close(synced[name], expected[name])
    assert this.instances.item() == 10  # compute syncs a copy; the local sums are kept


@pytest.mark.parametrize("problem", ["convex_hull", "delaunay", "tsp"])
def test_empty_metric_is_nan(problem):
    never_updated = PointerMetrics(problem)
    with pytest.warns(UserWarning, match="before the ``update``"):
        values = never_updated.compute()
    updated_with_nothing = PointerMetrics(problem)
    updated_with_nothing.update([], [], [])
    for result in (values, updated_with_nothing.compute()):
        assert len(result) == (5 if problem == "tsp" else 3)
        assert all(torch.isnan(value) for value in result.values())


def test_tsp_metric_without_a_valid_tour():
    metric = PointerMetrics("tsp")
    metric.update([SQUARE], [np.array([1, 2, 3, 1])], [SQUARE_HULL])
    result = metric.compute()
    assert result["seq_acc"].item() == 0.0 and result["invalid_rate"].item() == 1.0
    assert all(torch.isnan(result[name]) for name in ("tour_length", "target_length", "gap_pct"))


def test_unknown_problem_is_refused():
    with pytest.raises(ValueError, match="unknown problem 'knapsack'"):
        PointerMetrics("knapsack")
