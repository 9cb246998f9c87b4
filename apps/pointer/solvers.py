"""TSP solvers for the targets: exact Held–Karp (vectorised bitmask DP) for n ≤ 12, OR-Tools' routing
solver with guided local search (time-limited, so a heuristic) above that."""

from __future__ import annotations

import numpy as np

HELD_KARP_MAX_N = 12


def distance_matrix(points: np.ndarray) -> np.ndarray:
    """Euclidean distances [..., n, n] between the points [..., n, 2]."""
    return np.linalg.norm(points[..., :, None, :] - points[..., None, :, :], axis=-1)


def canonical_tour(tour: np.ndarray) -> np.ndarray:
    """Rotate a cycle (0-based, [n], open) to start at city 0 and orient it so its second city is the
    smaller-index neighbour of city 0; return it 1-based and closed ([n + 1]). One tour per cycle keeps
    the targets deterministic, which the model learns faster."""
    tour = np.roll(tour, -int(np.argmin(tour)))
    if len(tour) > 2 and tour[1] > tour[-1]:
        tour = np.concatenate([tour[:1], tour[1:][::-1]])
    return np.append(tour, tour[0]) + 1


def held_karp(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Optimal tours of a batch of instances ``points`` [B, n, 2] (3 ≤ n ≤ 12).

    Bellman–Held–Karp over subsets of cities 1..n-1, vectorised over the batch and over all subsets of
    one size: ``C(S, j) = min_k C(S - {j}, k) + d(k, j)``. Returns open tours [B, n] (0-based, from city
    0) and their lengths [B].
    """
    batch, n = points.shape[:2]
    if not 3 <= n <= HELD_KARP_MAX_N:
        raise ValueError(f"held_karp needs 3 <= n <= {HELD_KARP_MAX_N}, got n={n}")
    d = distance_matrix(points.astype(np.float64))
    m = n - 1  # cities 1..n-1 are bits 0..m-1
    full = (1 << m) - 1
    cost = np.full((batch, 1 << m, m), np.inf)
    parent = np.zeros((batch, 1 << m, m), dtype=np.int8)
    bits = np.arange(m)
    cost[:, 1 << bits, bits] = d[:, 0, 1:]
    subsets = np.arange(1 << m)
    popcount = np.array([bin(s).count("1") for s in subsets])
    d_from = d[:, 1:, 1:]  # d_from[:, k, j] = d(k+1, j+1)
    for size in range(2, m + 1):
        of_size = subsets[popcount == size]
        for j in range(m):
            with_j = of_size[(of_size >> j) & 1 == 1]
            candidates = cost[:, with_j ^ (1 << j), :] + d_from[:, None, :, j]
            parent[:, with_j, j] = candidates.argmin(-1)
            cost[:, with_j, j] = candidates.min(-1)
    closing = cost[:, full, :] + d[:, 1:, 0]
    last = closing.argmin(-1)
    lengths = closing[np.arange(batch), last]
    tours = np.zeros((batch, n), dtype=np.int64)
    subset = np.full(batch, full)
    rows = np.arange(batch)
    for position in range(n - 1, 0, -1):
        tours[:, position] = last + 1
        previous = parent[rows, subset, last].astype(np.int64)
        subset = subset ^ (1 << last)
        last = previous
    return tours, lengths


def ortools_tsp(points: np.ndarray, time_limit_ms: int = 200, scale: float = 1e6) -> np.ndarray:
    """A good tour [n] (0-based, from city 0) of one instance [n, 2]: OR-Tools routing, cheapest-arc
    start, guided local search for ``time_limit_ms``. Distances are scaled to integers by ``scale``."""
    from ortools.constraint_solver import pywrapcp, routing_enums_pb2

    n = len(points)
    dist = np.rint(distance_matrix(points) * scale).astype(np.int64).tolist()
    manager = pywrapcp.RoutingIndexManager(n, 1, 0)
    routing = pywrapcp.RoutingModel(manager)
    transit = routing.RegisterTransitMatrix(dist)
    routing.SetArcCostEvaluatorOfAllVehicles(transit)
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.PATH_CHEAPEST_ARC
    params.local_search_metaheuristic = (
        routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
    )
    params.time_limit.FromMilliseconds(time_limit_ms)
    solution = routing.SolveWithParameters(params)
    if solution is None:
        raise RuntimeError(f"OR-Tools found no tour for an instance with n={n}")
    tour, index = [], routing.Start(0)
    while not routing.IsEnd(index):
        tour.append(manager.IndexToNode(index))
        index = solution.Value(routing.NextVar(index))
    return np.array(tour)
