"""Search displays and the scanpaths recorded on them, in objects rather than pixels (OAT, §3).

A :class:`Scene` is one display: its objects' boxes, the cell of the positional grid each object lies
in, its appearance descriptors, and which object is the target. A :class:`Scanpath` is one viewer's
search on it, as the sequence of fixated objects (plus the raw pixel fixations, kept for MultiMatch
and figures). Every reader and the simulator produce a :class:`SearchData`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

DESCRIPTOR_DIM = 12
"""Width of an object's appearance descriptor: the mean colour (RGB, in [0, 1]) of four horizontal
bands of its crop, top to bottom. Rendered crops are drawn from it; real crops are summarised by it."""


@dataclass
class Scene:
    """One search display.

    Attributes:
        name: the display's name (the collage file name, the COCO image name).
        width, height: the display's size in pixels.
        boxes: float32 ``[N, 4]``, each object's ``(x0, y0, x1, y1)`` in pixels.
        cells: int64 ``[N, 2]``, each object's ``(row, col)`` on the positional grid.
        target: index of the target object in ``boxes``.
        descriptors: float32 ``[N + 1, DESCRIPTOR_DIM]``, the objects' appearance then the target
            picture's (the searcher is shown the target before the display).
        image: the display's picture, when the user supplied one (crops are then cut from it).
        target_image: the separate picture of the target, when supplied.
    """

    name: str
    width: int
    height: int
    boxes: np.ndarray
    cells: np.ndarray
    target: int
    descriptors: np.ndarray
    image: Path | None = None
    target_image: Path | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def centres(self) -> np.ndarray:
        """float32 ``[N, 2]``: each object's box centre ``(x, y)`` in pixels."""
        return (self.boxes[:, :2] + self.boxes[:, 2:]) / 2


@dataclass
class Scanpath:
    """One viewer's search of one scene.

    Attributes:
        scene: the :class:`Scene` 's name.
        viewer: the viewer's id as the source gives it.
        objects: int64 ``[L]``, the fixated objects in order (L ≥ 1; refixations repeat an index).
        fixations: float32 ``[L, 2]``, the fixations ``(x, y)`` in pixels.
        durations: float32 ``[L]``, fixation durations in ms (NaN where the source has none).
    """

    scene: str
    viewer: str
    objects: np.ndarray
    fixations: np.ndarray
    durations: np.ndarray

    def __len__(self) -> int:
        return len(self.objects)


@dataclass
class SearchData:
    """Scenes by name, the scanpaths on them, and the positional grid ``(rows, cols)`` the scenes'
    ``cells`` index. ``skipped`` counts the scanpaths a reader left out (each one logged with why)."""

    scenes: dict[str, Scene]
    scanpaths: list[Scanpath]
    grid: tuple[int, int]
    skipped: int = 0


CellsT = TypeVar("CellsT", np.ndarray, "torch.Tensor")


def cell_index(cells: CellsT, grid: tuple[int, int]) -> CellsT:
    """``[..., 2]`` ``(row, col)`` → ``[...]`` row-major index of the cell on a ``grid = (rows,
    cols)`` (numpy arrays and torch tensors alike)."""
    return cells[..., 0] * grid[1] + cells[..., 1]


def grid_cells(
    centres: np.ndarray, width: float, height: float, grid: tuple[int, int]
) -> np.ndarray:
    """int64 ``[N, 2]``: the ``(row, col)`` of the ``grid = (rows, cols)`` cell that tiles a
    ``width × height`` display and holds each ``(x, y)`` of ``centres [N, 2]`` (edges clamp inwards)."""
    rows, cols = grid
    col = np.clip(np.floor(centres[:, 0] / width * cols), 0, cols - 1)
    row = np.clip(np.floor(centres[:, 1] / height * rows), 0, rows - 1)
    return np.stack([row, col], axis=1).astype(np.int64)
