"""The two baseline searchers on a hand-made 3×3 grid of 100 px cells (object 3·row + col)."""

from __future__ import annotations

import numpy as np
import pytest

from apps.scanpath.baselines import BASELINES, center_bias_scanpath, similarity_scanpath
from apps.scanpath.scenes import DESCRIPTOR_DIM, Scene

ROWS, COLS = np.divmod(np.arange(9), 3)
BOXES = np.stack([COLS * 100, ROWS * 100, COLS * 100 + 100, ROWS * 100 + 100], axis=1)


def grid_scene(target: int, descriptors: np.ndarray | None = None) -> Scene:
    """The 3×3 grid on a 300×300 display (object 4 is at the centre)."""
    if descriptors is None:
        descriptors = np.zeros((10, DESCRIPTOR_DIM))
    return Scene(
        name="grid",
        width=300,
        height=300,
        boxes=BOXES.astype(np.float32),
        cells=np.stack([ROWS, COLS], axis=1),
        target=target,
        descriptors=descriptors.astype(np.float32),
    )


def decoy_descriptors() -> np.ndarray:
    """Target picture e0; objects 2 and 3 look most like it (equal), then the target 8, the rest
    nothing like it."""
    descriptors = np.zeros((10, DESCRIPTOR_DIM))
    descriptors[:9, 1] = 1.0
    descriptors[[2, 3], 0], descriptors[[2, 3], 1] = 1.0, 0.2  # cosine 0.98
    descriptors[8, 0] = 1.0  # cosine 0.71
    descriptors[9, 0] = 1.0
    return descriptors


@pytest.mark.parametrize(
    ("target", "length", "expected"),
    [
        (2, 20, [4, 1, 0, 3, 6, 7, 8, 5, 2]),  # ties (1, 3, 5, 7 from 4) go to the lower index
        (2, 4, [4, 1, 0, 3]),  # stops after `length` fixations
        (0, 20, [4, 1, 0]),  # stops on the target
        (4, 20, [4]),  # starts on it
    ],
)
def test_center_bias(target, length, expected):
    assert center_bias_scanpath(grid_scene(target), length).tolist() == expected


@pytest.mark.parametrize(
    ("target", "length", "expected"),
    [
        (8, 20, [4, 3, 2, 8]),  # 3 and 2 tie on similarity; 3 is nearer to 4
        (8, 2, [4, 3]),
        (3, 20, [4, 3]),
    ],
)
def test_target_similarity(target, length, expected):
    scene = grid_scene(target, decoy_descriptors())
    assert similarity_scanpath(scene, length).tolist() == expected


def test_every_object_visited_at_most_once():
    scene = grid_scene(target=8)  # all descriptors zero: every similarity ties, distance decides
    for name, searcher in BASELINES.items():
        path = searcher(scene, 100)
        assert len(set(path.tolist())) == len(path) and path[-1] == 8, name


def test_rejects_empty_length():
    with pytest.raises(ValueError, match="at least one fixation"):
        center_bias_scanpath(grid_scene(0), 0)
