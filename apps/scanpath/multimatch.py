"""MultiMatch scanpath similarity (Jarodzka et al. 2010; Dewhurst et al. 2012), our own implementation.

It follows the reference Python implementation, multimatch-gaze 0.1.3 (``docomparison``), step by
step, so the numbers match it (the tests check to 1e-6):

1. fixations ``(x, y, duration)`` → saccade vectors between consecutive fixations; saccade ``i``
   starts at fixation ``i`` and carries that fixation's duration;
2. optional simplification: direction grouping then amplitude grouping, repeated until the number of
   durations stops changing. A threshold of 0 disables its rule, as in the reference (its defaults
   are all 0; with ``duration_threshold = 0`` nothing merges, since durations are never negative);
3. alignment: the matrix of saccade-vector differences, and its cheapest monotone path from the first
   pair to the last (steps right, down or diagonal). A dynamic programme would find the same cost,
   but object scanpaths tie often (refixations and repeated objects give equal vectors) and the
   similarities depend on which of the equal-cost paths is taken (by up to 0.33 on a grid of
   objects), so we run scipy's Dijkstra on the same graph as the reference to resolve ties alike;
4. five similarities, each ``1 −`` the median difference along the path over a normaliser: shape
   (vector difference / 2·diagonal), direction (angle / π), length (amplitude difference /
   diagonal), position (distance between the saccades' start points / diagonal) and duration
   (``|d1 − d2| / max(d1, d2)`` of the saccades' start fixations).

Two quirks of the reference's amplitude grouping are kept on purpose (to stay comparable with
published numbers): when the *last* saccade is merged, the previous output saccade is replaced by
the sum of the last two *input* saccades (dropping an earlier saccade it may have absorbed), and one
extra duration is recorded, which can end the repeat loop one round early. Where the reference
crashes (merging a lone last saccade: an ``IndexError``; exactly parallel saccades: ``math.acos`` of
a rounded cosine above 1) we keep the saccade and clip the cosine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

DIMENSIONS = ("shape", "direction", "length", "position", "duration")
"""The five MultiMatch similarities, in the reference's order (vector, direction, length, position,
duration)."""

MIN_FIXATIONS = 3
"""The reference compares scanpaths of at least 3 fixations (2 saccades) and returns NaN otherwise."""


@dataclass
class Saccades:
    """A scanpath as saccades.

    Attributes:
        starts: float64 ``[S, 2]``, each saccade's start point (its start fixation).
        vectors: float64 ``[S, 2]``, each saccade's ``(dx, dy)``.
        durations: the start fixations' durations, then the last fixation's (``S + 1`` values, one
            more after the reference's last-saccade merge; only the first ``S`` are compared).
    """

    starts: np.ndarray
    vectors: np.ndarray
    durations: list[float]

    def __len__(self) -> int:
        return len(self.vectors)


def to_saccades(fixations: np.ndarray) -> Saccades:
    """The saccades of ``fixations [L, 3]`` ``(x, y, duration)``, L ≥ 2."""
    points = np.asarray(fixations[:, :2], dtype=np.float64)
    return Saccades(points[:-1], np.diff(points, axis=0), [float(d) for d in fixations[:, 2]])


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between vectors ``a`` and ``b`` in degrees; NaN when one has length 0 (never merged)."""
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norms == 0.0:
        return math.nan
    return math.degrees(math.acos(min(1.0, max(-1.0, float(a @ b) / norms))))


def _built(starts: list[np.ndarray], vectors: list[np.ndarray], durations: list[float]) -> Saccades:
    """:class:`Saccades` from per-saccade lists."""
    return Saccades(np.array(starts), np.array(vectors), durations)


def group_by_direction(path: Saccades, direction: float, duration: float) -> Saccades:
    """One pass of direction grouping: saccade ``i`` absorbs saccade ``i + 1`` when the angle between
    them is below ``direction`` degrees and the fixation between them is shorter than ``duration``."""
    starts, vectors, durations, i = [], [], [], 0
    while i < len(path):
        merge = i + 1 < len(path) and path.durations[i + 1] < duration
        merge = merge and _angle(path.vectors[i], path.vectors[i + 1]) < direction
        starts.append(path.starts[i])
        vectors.append(path.vectors[i : i + 2].sum(axis=0) if merge else path.vectors[i])
        durations.append(path.durations[i])
        i += 2 if merge else 1
    return _built(starts, vectors, [*durations, path.durations[-1]])


def group_by_amplitude(path: Saccades, amplitude: float, duration: float) -> Saccades:
    """One pass of amplitude grouping: a saccade shorter than ``amplitude`` px absorbs the next one
    when either fixation it joins is shorter than ``duration``; a short last saccade is merged into
    the previous output saccade (the reference's quirk, see the module docstring)."""
    lengths, d = np.linalg.norm(path.vectors, axis=1), path.durations
    starts, vectors, durations, i, last = [], [], [], 0, len(path) - 1
    while i < len(path):
        short = lengths[i] < amplitude
        if i == last and short and vectors and (d[-1] < duration or d[-2] < duration):
            vectors[-1] = path.vectors[i - 1] + path.vectors[i]
            durations.append(d[i - 1])
        elif i < last and short and (d[i + 1] < duration or d[i] < duration):
            starts.append(path.starts[i])
            vectors.append(path.vectors[i] + path.vectors[i + 1])
            durations.append(d[i])
            i += 1
        else:
            starts.append(path.starts[i])
            vectors.append(path.vectors[i])
            durations.append(d[i])
        i += 1
    return _built(starts, vectors, [*durations, d[-1]])


def simplify(path: Saccades, amplitude: float, direction: float, duration: float) -> Saccades:
    """Direction then amplitude grouping, repeated until the number of durations stops changing."""
    count = len(path.durations)
    while True:
        path = group_by_amplitude(
            group_by_direction(path, direction, duration), amplitude, duration
        )
        if len(path.durations) == count:
            return path
        count = len(path.durations)


def align(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest monotone path through ``cost [A, B]`` from ``(0, 0)`` to ``(A − 1, B − 1)``
    (steps down, right or diagonal, each costing the cell it enters), as row and column indices
    ``[P]`` each. Dijkstra on the reference's graph, so equal-cost paths resolve as they do there."""
    rows, cols = cost.shape
    node = np.arange(rows * cols).reshape(rows, cols)
    steps = ((0, 1), (1, 0), (1, 1))  # right, down, diagonal
    sources = np.concatenate([node[: rows - di, : cols - dj].ravel() for di, dj in steps])
    targets = np.concatenate([node[di:, dj:].ravel() for di, dj in steps])
    graph = coo_matrix((cost.ravel()[targets], (sources, targets)), shape=(node.size, node.size))
    _, predecessors = dijkstra(graph.tocsr(), indices=0, return_predecessors=True)
    path = [node.size - 1]
    while path[-1] != 0:
        path.append(int(predecessors[path[-1]]))
    return np.divmod(np.array(path[::-1]), cols)


def _direction_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute angle ``[P]`` in ``[0, π]`` between saccade vectors ``a [P, 2]`` and ``b [P, 2]``."""
    diff = np.abs(np.arctan2(a[:, 1], a[:, 0]) - np.arctan2(b[:, 1], b[:, 0]))
    return np.minimum(diff, 2 * np.pi - diff)


def compare(a: Saccades, b: Saccades, screen: tuple[float, float]) -> dict[str, float]:
    """The five similarities of two (simplified) saccade sequences on a ``screen = (w, h)``."""
    ia, ib = align(np.linalg.norm(a.vectors[:, None] - b.vectors[None], axis=2))
    va, vb = a.vectors[ia], b.vectors[ib]
    da, db = np.array(a.durations)[ia], np.array(b.durations)[ib]
    diagonal = math.hypot(*screen)
    differences = (
        np.linalg.norm(va - vb, axis=1) / (2 * diagonal),
        _direction_difference(va, vb) / math.pi,
        np.abs(np.linalg.norm(va, axis=1) - np.linalg.norm(vb, axis=1)) / diagonal,
        np.linalg.norm(a.starts[ia] - b.starts[ib], axis=1) / diagonal,
        np.abs(da - db) / np.maximum(da, db),
    )
    return {
        name: 1.0 - float(np.median(d)) for name, d in zip(DIMENSIONS, differences, strict=True)
    }


def multimatch(
    fix_a: np.ndarray,
    fix_b: np.ndarray,
    screen: tuple[float, float],
    amplitude_threshold: float = 0.0,
    direction_threshold: float = 0.0,
    duration_threshold: float = 0.0,
) -> dict[str, float]:
    """MultiMatch similarities (1 = identical) of fixations ``fix_a [La, 3]`` and ``fix_b [Lb, 3]``
    ``(x, y, duration)`` on a ``screen = (w, h)`` in pixels, keyed by :data:`DIMENSIONS`.

    Thresholds: amplitude in pixels, direction in degrees, duration in the durations' unit; 0 turns a
    rule off (the defaults: no simplification). NaN for every key when either scanpath has fewer than
    :data:`MIN_FIXATIONS` fixations, as in the reference.
    """
    if min(len(fix_a), len(fix_b)) < MIN_FIXATIONS:
        return dict.fromkeys(DIMENSIONS, math.nan)
    thresholds = (amplitude_threshold, direction_threshold, duration_threshold)
    a, b = (simplify(to_saccades(f), *thresholds) for f in (fix_a, fix_b))
    return compare(a, b, screen)
