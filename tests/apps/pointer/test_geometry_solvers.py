"""Targets: hull order as in the released file, Delaunay order, Held–Karp = brute force."""

from __future__ import annotations

import numpy as np
import pytest

from apps.pointer.geometry import convex_hull_sequence, delaunay_sequence, incenters
from apps.pointer.readers import read_released_file
from apps.pointer.solvers import canonical_tour, held_karp, ortools_tsp

from .tsp_brute_force import brute_force_tsp


def test_hull_order_matches_released_file(released_hull_5):
    instances = read_released_file(released_hull_5)
    assert len(instances) == 10000
    for points, output in instances:
        np.testing.assert_array_equal(convex_hull_sequence(points), output)


def test_delaunay_triangles_sorted_by_incenter():
    points = np.random.default_rng(0).random((12, 2))
    sequence = delaunay_sequence(points)
    triangles = sequence.reshape(-1, 3) - 1
    assert (np.diff(triangles, axis=1) > 0).all()
    centers = incenters(points, triangles)
    assert (np.diff(centers[:, 0]) >= 0).all()


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 8])
def test_held_karp_matches_brute_force(n):
    points = np.random.default_rng(n).random((6, n, 2))
    tours, lengths = held_karp(points)
    for b in range(len(points)):
        _, best = brute_force_tsp(points[b])
        assert lengths[b] == pytest.approx(best, abs=1e-12)
        assert sorted(tours[b]) == list(range(n)) and tours[b][0] == 0
        closed = np.append(tours[b], 0)
        walked = np.linalg.norm(np.diff(points[b][closed], axis=0), axis=1).sum()
        assert walked == pytest.approx(best, abs=1e-12)


def test_canonical_tour_and_ortools_on_small_instance():
    points = np.random.default_rng(1).random((1, 8, 2))
    tours, lengths = held_karp(points)
    tour = canonical_tour(tours[0])
    assert tour[0] == tour[-1] == 1 and tour[1] < tour[-2]
    heuristic = np.append(ortools_tsp(points[0], time_limit_ms=100), 0)
    length = np.linalg.norm(np.diff(points[0][heuristic], axis=0), axis=1).sum()
    assert length == pytest.approx(lengths[0], rel=1e-6)
