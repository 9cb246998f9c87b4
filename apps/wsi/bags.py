"""A slide as a bag of instances: its tile features, where the tiles lie, its label, and (when the
slide was tiled here) a thumbnail to draw attention over."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Bag:
    """One slide's instances.

    Attributes:
        slide_id: the slide's name (file stem, CLAM ``slide_id``, ACMIL group name).
        features: float32 ``[N, D]``, one row per tile.
        coords: int64 ``[N, 2]``, each tile's top-left corner ``(x, y)`` in level-0 pixels.
        label: the class name as the source gives it (``"tumour"``, ``"1"``), None when unknown.
        tile_size: side of a tile in level-0 pixels (0 when the source does not say).
        thumbnail: uint8 ``[h, w, 3]`` picture of the slide, or None.
        thumbnail_downsample: level-0 pixels per thumbnail pixel.
        instance_labels: bool ``[N]``, True on tiles known to show the positive class (the
            synthetic slides' planted tumour), None when unknown.
    """

    slide_id: str
    features: np.ndarray
    coords: np.ndarray
    label: str | None = None
    tile_size: int = 0
    thumbnail: np.ndarray | None = None
    thumbnail_downsample: float = 1.0
    instance_labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.features)
