"""The app's shared vocabulary: classes, a LiDAR frame with its boxes, and the voxel grid.

Frames follow the LiDAR convention of KITTI/OpenPCDet: x forward, y left, z up, metres. A box is
``(x, y, z, dx, dy, dz, yaw)`` with (x, y, z) its centre, dx its length along the heading, dy its width,
dz its height and yaw the heading's angle from +x towards +y (radians).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

CLASSES: tuple[str, ...] = ("Car", "Pedestrian", "Cyclist")
"""The KITTI detection classes; a label is an index into this tuple."""

BOX_DIM = 7
"""(x, y, z, dx, dy, dz, yaw)."""

GridShape = tuple[int, int, int]
"""Voxels along (z, y, x): (nz, ny, nx)."""


@dataclass
class Frame:
    """One LiDAR sweep and its annotation.

    points: float32 ``[N, 4]`` (x, y, z, intensity in [0, 1]).
    boxes: float32 ``[M, 7]`` in the LiDAR frame.
    labels: int64 ``[M]`` indices into :data:`CLASSES`.
    difficulty: int64 ``[M]``: KITTI's 0 easy, 1 moderate, 2 hard, −1 for boxes the benchmark ignores
        (too small, too occluded or truncated).
    """

    frame_id: str
    points: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    difficulty: torch.Tensor


@dataclass(frozen=True)
class VoxelGrid:
    """A box-shaped region of space cut into voxels.

    point_range: (x_min, y_min, z_min, x_max, y_max, z_max), metres.
    voxel_size: (vx, vy, vz), metres; a pillar grid has vz = z_max − z_min.
    """

    point_range: tuple[float, float, float, float, float, float] = (
        0.0,
        -25.6,
        -3.0,
        51.2,
        25.6,
        1.0,
    )
    voxel_size: tuple[float, float, float] = (0.32, 0.32, 4.0)

    def __post_init__(self) -> None:
        lo, hi = self.point_range[:3], self.point_range[3:]
        if any(h <= low for low, h in zip(lo, hi, strict=True)):
            raise ValueError(f"point_range {self.point_range}: each max must exceed its min")
        if any(v <= 0 for v in self.voxel_size):
            raise ValueError(f"voxel_size {self.voxel_size} must be positive")

    @property
    def shape(self) -> GridShape:
        """(nz, ny, nx): voxels along z, y and x (extents rounded to whole voxels)."""
        lo, hi = self.point_range[:3], self.point_range[3:]
        nx, ny, nz = (
            max(1, math.floor((h - low) / v + 0.5))
            for low, h, v in zip(lo, hi, self.voxel_size, strict=True)
        )
        return nz, ny, nx

    def lower(self, device: torch.device | None = None) -> torch.Tensor:
        """(x_min, y_min, z_min) as a float32 ``[3]`` tensor."""
        return torch.tensor(self.point_range[:3], dtype=torch.float32, device=device)

    def size(self, device: torch.device | None = None) -> torch.Tensor:
        """(vx, vy, vz) as a float32 ``[3]`` tensor."""
        return torch.tensor(self.voxel_size, dtype=torch.float32, device=device)
