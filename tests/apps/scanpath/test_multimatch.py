"""Our MultiMatch against the reference (multimatch-gaze) on random pairs, and hand-checked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apps.scanpath.multimatch import DIMENSIONS, align, multimatch, simplify, to_saccades

SCREEN = (800, 600)
GROUPING = {"TAmp": 250.0, "TDir": 45.0, "TDur": 0.3}  # merges often with durations in [0.1, 0.5]


def random_fixations(rng: np.random.Generator, grid: bool = False) -> np.ndarray:
    """``[L, 3]`` random fixations, L in 3..20, durations in seconds; with ``grid``, on the centres
    of a 4×3 grid of 200 px cells with a constant duration (object scanpaths: many exact ties)."""
    length = int(rng.integers(3, 21))
    if grid:
        cells = rng.integers(0, (4, 3), (length, 2))
        return np.concatenate([cells * 200.0 + 100.0, np.ones((length, 1))], axis=1)
    x, y = rng.uniform(0, SCREEN[0], length), rng.uniform(0, SCREEN[1], length)
    return np.stack([x, y, rng.uniform(0.1, 0.5, length)], axis=1)


def as_records(fixations: np.ndarray) -> np.ndarray:
    """The reference's input: a structured array with fields start_x, start_y, duration."""
    fields = [("start_x", "f8"), ("start_y", "f8"), ("duration", "f8")]
    records = np.zeros(len(fixations), dtype=fields)
    records["start_x"], records["start_y"], records["duration"] = fixations.T
    return records


@pytest.mark.parametrize(("grouping", "grid"), [(False, False), (True, False), (False, True)])
def test_matches_multimatch_gaze(grouping, grid):
    reference = pytest.importorskip("multimatch_gaze", reason="the reference MultiMatch to compare")
    rng = np.random.default_rng(7 + grouping + 2 * grid)
    thresholds = GROUPING if grouping else {}
    compared = 0
    for _ in range(30):
        a, b = random_fixations(rng, grid), random_fixations(rng, grid)
        try:
            expected = reference.docomparison(
                as_records(a), as_records(b), list(SCREEN), grouping=grouping, **thresholds
            )
        except IndexError:  # the reference fails to merge a lone last saccade; we keep it
            continue
        ours = multimatch(
            a,
            b,
            SCREEN,
            amplitude_threshold=thresholds.get("TAmp", 0.0),
            direction_threshold=thresholds.get("TDir", 0.0),
            duration_threshold=thresholds.get("TDur", 0.0),
        )
        assert [ours[d] for d in DIMENSIONS] == pytest.approx(list(expected), abs=1e-6)
        compared += 1
    assert compared >= 20


def test_identical_scanpaths_are_fully_similar():
    fixations = random_fixations(np.random.default_rng(0))
    assert multimatch(fixations, fixations, SCREEN) == pytest.approx(dict.fromkeys(DIMENSIONS, 1.0))


def test_mirror_image_differs_in_direction():
    fixations = np.array([[100, 100, 0.2], [300, 150, 0.3], [500, 400, 0.2], [700, 500, 0.4]])
    mirror = fixations.copy()
    mirror[:, 0] = SCREEN[0] - mirror[:, 0]
    result = multimatch(fixations, mirror, SCREEN)
    assert result["direction"] < 1 and result["shape"] < 1 and result["position"] < 1
    assert result["length"] == pytest.approx(1.0) and result["duration"] == pytest.approx(1.0)


def test_short_scanpath_gives_nan():
    long = np.array([[0, 0, 1], [100, 0, 1], [100, 100, 1]], dtype=float)
    result = multimatch(long[:2], long, SCREEN)
    assert all(math.isnan(result[d]) for d in DIMENSIONS)


def test_simplify_merges_collinear_saccades_after_a_short_fixation():
    # two rightward saccades through a 0.05 s fixation, then one down
    fixations = np.array([[0, 0, 0.3], [100, 0, 0.05], [200, 0, 0.3], [200, 100, 0.3]], dtype=float)
    path = simplify(to_saccades(fixations), amplitude=0.0, direction=45.0, duration=0.1)
    np.testing.assert_allclose(path.vectors, [[200, 0], [0, 100]])
    np.testing.assert_allclose(path.starts, [[0, 0], [200, 0]])
    assert path.durations == [0.3, 0.3, 0.3]


def test_align_takes_the_cheapest_monotone_path():
    cost = np.array([[0.0, 5.0, 5.0], [1.0, 5.0, 5.0], [5.0, 0.0, 0.0]])
    rows, cols = align(cost)
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 0), (1, 0), (2, 1), (2, 2)]
