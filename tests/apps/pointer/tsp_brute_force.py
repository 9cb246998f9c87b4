"""Exhaustive TSP for tests: the optimum by trying every tour (n ≤ 9 or so)."""

from __future__ import annotations

import itertools

import numpy as np

from apps.pointer.solvers import distance_matrix


def brute_force_tsp(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Optimal open tour [n] (0-based, from city 0) of one instance [n, 2] and its length."""
    d = distance_matrix(points)
    best, best_tour = np.inf, None
    for rest in itertools.permutations(range(1, len(points))):
        tour = (0, *rest)
        length = sum(d[tour[i], tour[(i + 1) % len(tour)]] for i in range(len(tour)))
        if length < best:
            best, best_tour = length, tour
    return np.array(best_tour), float(best)
