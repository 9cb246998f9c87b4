"""The two heuristic searchers OAT must beat, producing object-index scanpaths for a Scene.

Both start on the object nearest the display's centre (the centre bias of the first fixation), never
visit an object twice, and stop once they fixate the target (a searcher who has found the target ends
its search, as the human scanpaths do), after ``length`` fixations (pass the humans' mean length on
the training set), or when every object has been visited. Exact ties go to the lower object index.

* center bias: move to the nearest unvisited object.
* target similarity: move to the unvisited object whose appearance descriptor is most similar
  (cosine) to the target picture's, ties (similarities equal to 6 decimals) to the nearer one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from apps.scanpath.scenes import Scene

Chooser = Callable[[Scene, int, np.ndarray], int]
"""Picks the next object from a scene, the current object and the unvisited mask ``[N]``."""


def _distances(scene: Scene, point: np.ndarray) -> np.ndarray:
    """float64 ``[N]``: each object centre's distance to ``point (x, y)``."""
    return np.linalg.norm(scene.centres.astype(np.float64) - point, axis=1)


def target_similarity(scene: Scene) -> np.ndarray:
    """float64 ``[N]``: cosine similarity of each object's descriptor to the target picture's (the
    last row of ``scene.descriptors``)."""
    descriptors = scene.descriptors.astype(np.float64)
    objects, target = descriptors[:-1], descriptors[-1]
    norms = np.linalg.norm(objects, axis=1) * np.linalg.norm(target)
    return objects @ target / np.maximum(norms, 1e-12)


def _nearest(scene: Scene, current: int, unvisited: np.ndarray) -> int:
    """The unvisited object nearest the current one."""
    distances = _distances(scene, scene.centres[current].astype(np.float64))
    return int(np.argmin(np.where(unvisited, distances, np.inf)))


def _most_similar(scene: Scene, current: int, unvisited: np.ndarray) -> int:
    """The unvisited object most similar to the target, the nearer one among ties."""
    similarity = np.round(target_similarity(scene), 6)
    distances = _distances(scene, scene.centres[current].astype(np.float64))
    order = np.lexsort((distances, -similarity))  # by similarity down, then distance up
    return int(order[unvisited[order]][0])


def _search(scene: Scene, length: int, choose: Chooser) -> np.ndarray:
    """int64 ``[L]``: the greedy search from the object nearest the centre (see the module doc)."""
    if length < 1:
        raise ValueError(f"a scanpath needs at least one fixation, got length {length}")
    centre = np.array([scene.width / 2, scene.height / 2])
    path = [int(np.argmin(_distances(scene, centre)))]
    unvisited = np.ones(len(scene), dtype=bool)
    unvisited[path[0]] = False
    while path[-1] != scene.target and len(path) < length and unvisited.any():
        path.append(choose(scene, path[-1], unvisited))
        unvisited[path[-1]] = False
    return np.array(path, dtype=np.int64)


def center_bias_scanpath(scene: Scene, length: int) -> np.ndarray:
    """int64 ``[L ≤ length]``: the center-bias searcher (nearest unvisited object each time)."""
    return _search(scene, length, _nearest)


def similarity_scanpath(scene: Scene, length: int) -> np.ndarray:
    """int64 ``[L ≤ length]``: the target-similarity searcher (most target-like unvisited object)."""
    return _search(scene, length, _most_similar)


BASELINES: dict[str, Callable[[Scene, int], np.ndarray]] = {
    "center_bias": center_bias_scanpath,
    "target_similarity": similarity_scanpath,
}
"""Baseline name → searcher ``(scene, length) → object sequence``."""
