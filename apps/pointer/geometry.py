"""Exact planar geometry for the three Ptr-Net problems: hull order, Delaunay triangles, tours, areas.

Index convention (as in the released files): points are numbered 1..n; 0 is reserved for the learned
end-of-sequence position of the model. Functions here take and return these 1-based indices.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, Delaunay


def convex_hull_sequence(points: np.ndarray) -> np.ndarray:
    """Hull vertices of ``points`` [n, 2], counter-clockwise, starting at the lowest index, closed.

    Returns 1-based indices ``[h + 1]`` (the first index repeated at the end), as in the released files.
    """
    vertices = ConvexHull(points).vertices  # counter-clockwise in 2-D
    start = int(np.argmin(vertices))
    cycle = np.roll(vertices, -start) + 1
    return np.append(cycle, cycle[0])


def incenters(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Incenters [M, 2] of ``triangles`` [M, 3] (0-based) over ``points`` [n, 2]."""
    a, b, c = (points[triangles[:, k]] for k in range(3))
    la = np.linalg.norm(b - c, axis=1, keepdims=True)
    lb = np.linalg.norm(c - a, axis=1, keepdims=True)
    lc = np.linalg.norm(a - b, axis=1, keepdims=True)
    return (la * a + lb * b + lc * c) / (la + lb + lc)


def delaunay_sequence(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles of ``points`` [n, 2], ordered by incenter (x, then y), each triangle's three
    indices ascending; returns the concatenated 1-based indices ``[3M]``."""
    triangles = np.sort(Delaunay(points).simplices, axis=1)
    centers = incenters(points, triangles)
    order = np.lexsort((centers[:, 1], centers[:, 0]))
    return (triangles[order] + 1).reshape(-1)


def tour_length(points: np.ndarray, tour: np.ndarray) -> float:
    """Length of the closed tour ``tour`` (1-based, [n + 1] with the start repeated) over ``points``."""
    xy = points[np.asarray(tour) - 1]
    return float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum())


def polygon_area(xy: np.ndarray) -> float:
    """Unsigned shoelace area of the polygon with vertices ``xy`` [k, 2] (not closed)."""
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _segments_cross(p: np.ndarray, q: np.ndarray, r: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Proper intersection of segments pq and rs (arrays [..., 2]); touching endpoints do not count."""

    def orient(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.sign(
            (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1])
            - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])
        )

    return (orient(p, q, r) * orient(p, q, s) < 0) & (orient(r, s, p) * orient(r, s, q) < 0)


def is_simple_polygon(xy: np.ndarray) -> bool:
    """True when the closed polygon through ``xy`` [k, 2] (k ≥ 3, not closed) has no crossing edges."""
    k = len(xy)
    start, end = xy, np.roll(xy, -1, axis=0)
    i, j = np.triu_indices(k, k=2)
    keep = ~((i == 0) & (j == k - 1))  # the first and last edges share a vertex
    i, j = i[keep], j[keep]
    return not _segments_cross(start[i], end[i], start[j], end[j]).any()
