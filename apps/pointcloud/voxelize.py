"""Dynamic voxelisation and the dynamic pillar/voxel feature encoder (PointPillars' PFN).

Dynamic means no cap on points per voxel and no cap on voxels: every point inside the grid is kept
and every occupied voxel is encoded, as DSVT's and OpenPCDet's dynamic pillar VFE do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from apps.pointcloud.frames import VoxelGrid

POINT_DIM = 4
"""(x, y, z, intensity)."""

OFFSET_FEATURES = 6
"""Offsets of a point to its voxel's point mean (3) and to its voxel's geometric centre (3)."""


@dataclass
class Voxels:
    """A batch of point clouds cut into voxels.

    coords: int64 ``[V, 4]`` (b, z, y, x), unique and sorted by (b, z, y, x).
    point_voxel: int64 ``[N']`` the row of ``coords`` each kept point falls in.
    points: float32 ``[N', 4]`` the kept points (inside the grid), in input order.
    batch_size: B.
    dropped: int64 ``[B]`` points of each batch item outside the grid.
    """

    coords: torch.Tensor
    point_voxel: torch.Tensor
    points: torch.Tensor
    batch_size: int
    dropped: torch.Tensor


def _check_inputs(points: torch.Tensor, batch_index: torch.Tensor, batch_size: int) -> None:
    """ValueError on wrong shapes, batch indices outside [0, batch_size) or non-finite points."""
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f"points {tuple(points.shape)} must be [N, C] with C >= 3 (x, y, z, ...)")
    if batch_index.shape != points.shape[:1]:
        raise ValueError(f"batch_index {tuple(batch_index.shape)} must be [N] = [{len(points)}]")
    if len(batch_index) and (batch_index.min() < 0 or batch_index.max() >= batch_size):
        raise ValueError(f"batch_index must lie in [0, {batch_size})")
    finite = torch.isfinite(points).all(dim=1)
    if not finite.all():
        bad = int((~finite).sum())
        raise ValueError(f"{bad} of {len(points)} points have a NaN or infinite coordinate")


def _voxel_cells(xyz: torch.Tensor, grid: VoxelGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """Each point's (x, y, z) voxel index ``[N, 3]`` and whether it lies inside the grid ``[N]``.

    Inside means lower <= p < upper on every axis and a whole voxel there (a grid whose extent is
    not a multiple of the voxel size ends at its last whole voxel). Float64, because in float32
    many points one step from a voxel wall round into the neighbouring voxel.
    """
    bounds = torch.tensor(grid.point_range, dtype=torch.float64, device=xyz.device)
    lower, upper = bounds[:3], bounds[3:]
    size = torch.tensor(grid.voxel_size, dtype=torch.float64, device=xyz.device)
    counts = torch.tensor(grid.shape[::-1], device=xyz.device)  # (nx, ny, nz)
    xyz = xyz.double()
    cells = torch.floor((xyz - lower) / size).long()
    inside = (xyz >= lower) & (xyz < upper) & (cells < counts)
    return cells, inside.all(dim=1)


def voxelize(
    points: torch.Tensor, batch_index: torch.Tensor, grid: VoxelGrid, batch_size: int
) -> Voxels:
    """Assign points ``[N, 4]`` (any ``[N, C >= 3]``) of ``batch_size`` clouds to voxels.

    batch_index: int64 ``[N]`` the cloud of each point, in [0, batch_size).
    Points outside the grid are dropped and counted per batch item; non-finite points raise
    ValueError.
    """
    _check_inputs(points, batch_index, batch_size)
    cells, inside = _voxel_cells(points[:, :3], grid)
    batch_index = batch_index.long()
    dropped = torch.bincount(batch_index[~inside], minlength=batch_size)
    nz, ny, nx = grid.shape
    x, y, z = cells[inside].unbind(dim=1)
    linear = ((batch_index[inside] * nz + z) * ny + y) * nx + x
    ids, point_voxel = torch.unique(linear, sorted=True, return_inverse=True)
    coords = torch.stack([ids // (nz * ny * nx), ids // (ny * nx) % nz, ids // nx % ny, ids % nx])
    return Voxels(coords.T.contiguous(), point_voxel, points[inside], batch_size, dropped)


def _linear_bn_relu(in_features: int, out_features: int) -> nn.Sequential:
    """Per-point Linear (no bias, the norm has one) + BatchNorm1d + ReLU."""
    return nn.Sequential(
        nn.Linear(in_features, out_features, bias=False),
        nn.BatchNorm1d(out_features),
        nn.ReLU(),
    )


def voxel_max(features: torch.Tensor, point_voxel: torch.Tensor, num_voxels: int) -> torch.Tensor:
    """Max of point features ``[N, C]`` over each voxel's points: ``[V, C]``."""
    index = point_voxel[:, None].expand_as(features)
    out = features.new_zeros(num_voxels, features.shape[1])
    return out.scatter_reduce(0, index, features, "amax", include_self=False)


def voxel_mean(values: torch.Tensor, point_voxel: torch.Tensor, num_voxels: int) -> torch.Tensor:
    """Mean of point values ``[N, C]`` over each voxel's points: ``[V, C]``."""
    sums = values.new_zeros(num_voxels, values.shape[1]).index_add_(0, point_voxel, values)
    counts = torch.bincount(point_voxel, minlength=num_voxels).clamp(min=1)
    return sums / counts[:, None].to(values.dtype)


class PillarFeatureNet(nn.Module):
    """Dynamic PointPillars encoder: points of each voxel → one feature ``[V, channels[-1]]``.

    Each point is described by its own channels (x, y, z, intensity, ...), its offset to its
    voxel's point mean and its offset to its voxel's geometric centre. Layer 1 maps those per point
    (Linear + BN + ReLU) and takes the max over the voxel; each later layer sees [point feature,
    its voxel's max] and does the same. Works for pillars (vz = the grid's height) and 3-D voxels.
    """

    def __init__(
        self,
        in_channels: int = POINT_DIM,
        channels: Sequence[int] = (64, 64),
        *,
        grid: VoxelGrid,
    ) -> None:
        super().__init__()
        if in_channels < 3 or not channels:
            raise ValueError(f"need in_channels >= 3 and a layer: {in_channels=}, {channels=}")
        self.in_channels = in_channels
        self.grid = grid
        widths = [in_channels + OFFSET_FEATURES, *(2 * c for c in channels[:-1])]
        self.layers = nn.ModuleList(
            _linear_bn_relu(w, c) for w, c in zip(widths, channels, strict=True)
        )
        self.out_channels = channels[-1]

    def point_features(self, voxels: Voxels) -> torch.Tensor:
        """Per point: (its channels, offset to voxel point mean, offset to voxel centre) ``[N, C+6]``."""
        points = voxels.points
        xyz = points[:, :3]
        num_voxels = len(voxels.coords)
        mean = voxel_mean(xyz, voxels.point_voxel, num_voxels)
        lower, size = self.grid.lower(xyz.device), self.grid.size(xyz.device)
        cell_xyz = voxels.coords[:, [3, 2, 1]].to(xyz.dtype)
        centre = lower + (cell_xyz + 0.5) * size
        offsets_mean = xyz - mean[voxels.point_voxel]
        offsets_centre = xyz - centre[voxels.point_voxel]
        return torch.cat([points, offsets_mean, offsets_centre], dim=1)

    def forward(self, voxels: Voxels) -> torch.Tensor:
        """Voxels with N' points in V voxels → features ``[V, out_channels]``."""
        if voxels.points.shape[1] != self.in_channels:
            raise ValueError(
                f"points have {voxels.points.shape[1]} channels, expected {self.in_channels}"
            )
        num_voxels = len(voxels.coords)
        point = self.layers[0](self.point_features(voxels))
        pooled = voxel_max(point, voxels.point_voxel, num_voxels)
        for layer in self.layers[1:]:
            point = layer(torch.cat([point, pooled[voxels.point_voxel]], dim=1))
            pooled = voxel_max(point, voxels.point_voxel, num_voxels)
        return pooled
