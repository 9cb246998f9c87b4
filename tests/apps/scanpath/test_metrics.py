"""The scanpath metrics on hand-checked sequences, and ScanpathMetrics = the per-instance scores summed."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from apps.scanpath.metrics import (
    ScanpathMetrics,
    behaviour,
    behaviour_delta,
    levenshtein,
    sequence_score,
    update_leave_one_out,
)

SIZE = (300, 300)
CENTRES = np.array([[50 + 100 * c, 50 + 100 * r] for r in range(3) for c in range(3)], float)


def seq(*objects: int) -> np.ndarray:
    return np.array(objects, dtype=np.int64)


@pytest.mark.parametrize(
    ("pred", "truth", "score"),
    [
        ([1, 2, 3], [1, 3], 2 / 3),
        ([1, 2, 3], [1, 2, 3], 1.0),
        ([1, 2], [3, 4, 5, 6], 0.0),
        ([1, 2], [2, 1], 0.5),
        ([5, 5, 3, 5, 7], [5, 3, 7], 3 / 5),
    ],
)
def test_sequence_score(pred, truth, score):
    assert sequence_score(seq(*pred), seq(*truth)) == pytest.approx(score)
    assert sequence_score(seq(*truth), seq(*pred)) == pytest.approx(score)


@pytest.mark.parametrize(
    ("pred", "truth", "distance"),
    [
        ([1, 2, 3], [1, 3], 1),
        ([1, 2, 3], [3, 2, 1], 2),
        ([], [1, 2], 2),
        ([1, 2, 3, 4], [2, 3, 4, 5], 2),
        ([4, 4, 4], [4, 4, 4], 0),
    ],
)
def test_levenshtein(pred, truth, distance):
    assert levenshtein(seq(*pred), seq(*truth)) == distance


def test_behaviour():
    stats = behaviour(seq(5, 5, 3, 5, 7), target=7)
    assert stats == pytest.approx(
        {"found": 1.0, "length": 5.0, "search": 3 / 5, "refix": 1 / 5, "revisit": 1 / 5}
    )
    assert behaviour(seq(5, 3), target=7)["found"] == 0.0


def test_behaviour_delta_skips_a_zero_human_statistic():
    model = {"found": 0.5, "length": 6.0, "search": 0.5, "refix": 0.25, "revisit": 0.25}
    human = {"found": 1.0, "length": 4.0, "search": 0.5, "refix": 0.5, "revisit": 0.0}
    assert behaviour_delta(model, human) == pytest.approx((0.5 + 0.5 + 0.0 + 0.5) / 4)
    assert math.isnan(behaviour_delta(model, dict.fromkeys(human, 0.0)))


def random_batch(rng: np.random.Generator, count: int) -> tuple[list, ...]:
    """``count`` instances on the grid: a prediction, 1–4 humans, a target, centres, sizes."""

    def path() -> np.ndarray:
        return rng.integers(0, 9, int(rng.integers(1, 9)))

    predictions = [path() for _ in range(count)]
    humans = [[path() for _ in range(int(rng.integers(1, 5)))] for _ in range(count)]
    targets = [int(rng.integers(0, 9)) for _ in range(count)]
    return predictions, humans, targets, [CENTRES] * count, [SIZE] * count


def test_update_in_halves_equals_one_update():
    batch = random_batch(np.random.default_rng(0), 12)
    whole, halves = ScanpathMetrics(), ScanpathMetrics()
    whole.update(*batch)
    halves.update(*(part[:5] for part in batch))
    halves.update(*(part[5:] for part in batch))
    expected, got = whole.compute(), halves.compute()
    assert expected.keys() == got.keys()
    for name in expected:
        assert got[name].item() == pytest.approx(expected[name].item(), nan_ok=True), name


def test_perfect_prediction():
    human = seq(4, 1, 0, 0, 3, 1, 6)
    metric = ScanpathMetrics()
    metric.update([human], [[human]], [6], [CENTRES], [SIZE])
    result = {name: value.item() for name, value in metric.compute().items()}
    assert result["SS"] == 1.0 and result["Lev"] == 0.0 and result["Lev_norm"] == 0.0
    assert result["delta"] == 0.0 and result["found"] == result["human_found"] == 1.0
    assert result["MM"] == pytest.approx(1.0) and result["MM_duration"] == pytest.approx(1.0)
    assert result["MM_defined"] == 1.0


def test_multimatch_skips_short_pairs():
    metric = ScanpathMetrics()
    long, short = seq(0, 1, 2, 5), seq(0, 1)
    metric.update([long, short], [[long, short], [long]], [5, 5], [CENTRES] * 2, [SIZE] * 2)
    result = {name: value.item() for name, value in metric.compute().items()}
    assert result["MM_shape"] == pytest.approx(1.0)  # only (long, long) is defined
    assert result["MM_defined"] == 0.5  # the short prediction has no defined pair
    assert result["SS"] == pytest.approx((0.75 + 0.5) / 2)


def human_consistency(humans_by_scene, targets):
    metric = ScanpathMetrics()
    for humans, target in zip(humans_by_scene, targets, strict=True):
        update_leave_one_out(metric, humans, target, CENTRES, SIZE)
    with warnings.catch_warnings():  # nothing added: compute's 0/0 NaNs are the answer
        warnings.filterwarnings("ignore", message="The ``compute`` method", category=UserWarning)
        return {name: float(value) for name, value in metric.compute().items()}


def test_leave_one_out_never_pairs_a_scanpath_with_itself():
    disjoint = [seq(0, 1, 2), seq(6, 7, 8)]
    result = human_consistency([disjoint], [8])
    assert result["SS"] == 0.0 and result["Lev"] == 3.0
    with_lone = human_consistency([disjoint, [seq(0, 1, 2)]], [8, 2])
    assert with_lone == pytest.approx(result, nan_ok=True)
    alone = human_consistency([[seq(0, 1, 2)]], [2])
    assert all(math.isnan(value) for value in alone.values())
