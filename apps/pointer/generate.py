"""The built-in data: uniform random points in the unit square with exact targets, cached on disk.

A set is keyed by (problem, n range, count, seed) and stored as ``<root>/<key>.npz`` (packed arrays +
offsets), so it is generated once and every epoch and every later run reads it back.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from apps.pointer.geometry import convex_hull_sequence, delaunay_sequence
from apps.pointer.solvers import HELD_KARP_MAX_N, canonical_tour, held_karp, ortools_tsp

log = logging.getLogger(__name__)
HELD_KARP_CHUNK = 256


def solve_tsp(points: list[np.ndarray], time_limit_ms: int) -> list[np.ndarray]:
    """Closed 1-based canonical tours: Held–Karp (exact, batched by n) for n ≤ 12, else OR-Tools."""
    tours: list[np.ndarray | None] = [None] * len(points)
    sizes = np.array([len(p) for p in points])
    with tqdm(total=len(points), desc="tsp targets", unit="inst", leave=False) as bar:
        for n in np.unique(sizes):
            index = np.flatnonzero(sizes == n)
            for start in range(0, len(index), HELD_KARP_CHUNK):
                chunk = index[start : start + HELD_KARP_CHUNK]
                if n <= HELD_KARP_MAX_N:
                    found, _ = held_karp(np.stack([points[i] for i in chunk]))
                else:
                    found = [ortools_tsp(points[i], time_limit_ms) for i in chunk]
                for i, tour in zip(chunk, found, strict=True):
                    tours[i] = canonical_tour(tour)
                bar.update(len(chunk))
    return tours


def generate(
    problem: str, n_range: tuple[int, int], count: int, seed: int, tsp_time_limit_ms: int = 200
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``count`` instances with n uniform in ``n_range`` (inclusive): points [n, 2] (float32) and
    their 1-based target sequences."""
    low, high = n_range
    if not 3 <= low <= high:
        raise ValueError(f"n range must satisfy 3 <= low <= high, got {n_range}")
    rng = np.random.default_rng(seed)
    sizes = rng.integers(low, high + 1, size=count)
    # float32, as stored and as the model sees them; the targets are exact for these coordinates
    points = [rng.random((n, 2)).astype(np.float32) for n in sizes]
    if problem == "tsp":
        return points, solve_tsp(points, tsp_time_limit_ms)
    solvers = {"convex_hull": convex_hull_sequence, "delaunay": delaunay_sequence}
    if problem not in solvers:
        raise ValueError(f"unknown problem {problem!r}; expected convex_hull, delaunay or tsp")
    solve = solvers[problem]
    targets = [solve(p) for p in tqdm(points, desc=f"{problem} targets", unit="inst", leave=False)]
    return points, targets


def _pack(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.cumsum([0] + [len(a) for a in arrays])
    return np.concatenate(arrays), offsets


def _unpack(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return np.split(flat, offsets[1:-1])


def cached_set(
    root: str | Path,
    problem: str,
    n_range: tuple[int, int],
    count: int,
    seed: int,
    tsp_time_limit_ms: int = 200,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """:func:`generate`, read from ``<root>/<problem>_n<lo>-<hi>_count<count>_seed<seed>.npz`` when
    there, written there otherwise."""
    low, high = n_range
    path = Path(root) / f"{problem}_n{low}-{high}_count{count}_seed{seed}.npz"
    if path.exists():
        with np.load(path) as stored:
            return (
                _unpack(stored["points"], stored["point_offsets"]),
                _unpack(stored["targets"], stored["target_offsets"]),
            )
    log.info("generating %s (%d instances, n=%d..%d) into %s", problem, count, low, high, path)
    points, targets = generate(problem, n_range, count, seed, tsp_time_limit_ms)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat_points, point_offsets = _pack(points)
    flat_targets, target_offsets = _pack(targets)
    # one temporary file per process: ddp ranks may generate the same set at once
    partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(
        partial,
        points=flat_points,
        point_offsets=point_offsets,
        targets=flat_targets,
        target_offsets=target_offsets,
    )
    os.replace(partial, path)  # atomic: a crash mid-write never leaves a truncated cache behind
    return points, targets
