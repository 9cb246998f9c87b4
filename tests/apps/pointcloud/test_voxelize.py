"""Dynamic voxelisation against a brute-force point-by-point assignment, and the pillar/voxel
feature net against a slow loop over voxels."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from apps.pointcloud.frames import VoxelGrid
from apps.pointcloud.voxelize import PillarFeatureNet, Voxels, voxelize

BATCH = 3
VOXEL_GRID = VoxelGrid(point_range=(0.0, -2.0, -1.0, 4.0, 2.0, 1.0), voxel_size=(0.5, 0.5, 0.5))
PILLAR_GRID = VoxelGrid(point_range=(0.0, -2.0, -1.0, 4.0, 2.0, 1.0), voxel_size=(0.5, 0.5, 2.0))
# extents not multiples of the sizes, sizes not exact in binary: the grid ends at its last whole voxel
ODD_GRID = VoxelGrid(point_range=(-1.0, -1.3, -0.7, 2.1, 1.3, 0.9), voxel_size=(0.3, 0.7, 0.45))
GRIDS = [VOXEL_GRID, PILLAR_GRID, ODD_GRID]


def random_cloud(
    grid: VoxelGrid, count: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points ``[count, 4]`` spread over the grid widened by a quarter per side, and batch indices."""
    lo = torch.tensor(grid.point_range[:3])
    hi = torch.tensor(grid.point_range[3:])
    margin = (hi - lo) / 4
    xyz = lo - margin + torch.rand(count, 3, generator=generator) * (hi - lo + 2 * margin)
    intensity = torch.rand(count, 1, generator=generator)
    batch_index = torch.randint(0, BATCH, (count,), generator=generator)
    return torch.cat([xyz, intensity], dim=1), batch_index


def brute_force_cell(point: list[float], grid: VoxelGrid) -> tuple[int, int, int] | None:
    """(z, y, x) of the whole voxel holding the point, or None when it is outside the grid.

    Exact arithmetic: the point's float value, the range and sizes as the decimals written.
    """
    exact = [Fraction(repr(v)) for v in (*grid.point_range, *grid.voxel_size)]
    counts = grid.shape[::-1]  # (nx, ny, nz)
    cell = []
    for axis in range(3):
        lo, hi, size = exact[axis], exact[axis + 3], exact[axis + 6]
        offset = Fraction(point[axis]) - lo
        index = math.floor(offset / size)
        if not 0 <= offset < hi - lo or index >= counts[axis]:
            return None
        cell.append(index)
    x, y, z = cell
    return z, y, x


def assert_cells_match_brute_force(
    points: torch.Tensor, batch_index: torch.Tensor, grid: VoxelGrid
) -> None:
    """voxelize keeps exactly the points inside the grid, names their voxels and counts the rest."""
    voxels = voxelize(points, batch_index, grid, BATCH)
    expected = [
        (b, brute_force_cell(p, grid))
        for p, b in zip(points.double().tolist(), batch_index.tolist(), strict=True)
    ]
    kept = torch.tensor([cell is not None for _, cell in expected])
    torch.testing.assert_close(voxels.points, points[kept], rtol=0, atol=0)
    named = voxels.coords[voxels.point_voxel].tolist()
    assert named == [[b, *cell] for b, cell in expected if cell is not None]
    dropped = [0] * BATCH
    for b, cell in expected:
        dropped[b] += cell is None
    assert voxels.dropped.tolist() == dropped
    assert 0 < len(named) < len(points)


@pytest.mark.parametrize("grid", GRIDS, ids=["voxels", "pillars", "odd"])
def test_each_kept_point_lies_in_the_voxel_its_coords_name(grid: VoxelGrid) -> None:
    generator = torch.Generator().manual_seed(GRIDS.index(grid))
    points, batch_index = random_cloud(grid, 600, generator)
    assert_cells_match_brute_force(points, batch_index, grid)


@pytest.mark.parametrize(
    "grid",
    [VoxelGrid(), VoxelGrid((0.0, -40.0, -3.0, 70.4, 40.0, 1.0), (0.05, 0.05, 0.1))],
    ids=["default-pillars", "kitti-voxels"],
)
def test_points_one_float32_step_from_each_voxel_boundary(grid: VoxelGrid) -> None:
    lo = torch.tensor(grid.point_range[:3], dtype=torch.float64)
    size = torch.tensor(grid.voxel_size, dtype=torch.float64)
    centre = (lo + torch.tensor(grid.point_range[3:], dtype=torch.float64)) / 2
    clouds = []
    for axis, count in enumerate(grid.shape[::-1]):
        walls = (lo[axis] + torch.arange(count + 1) * size[axis]).float()
        steps = torch.cat(
            [torch.nextafter(walls, walls - 1), walls, torch.nextafter(walls, walls + 1)]
        )
        steps = steps[
            (steps == 0) | (steps.abs() > 1e-30)
        ]  # next to 0, double rounds onto the wall
        cloud = centre.float().repeat(len(steps), 1) + 0.01
        cloud[:, axis] = steps
        clouds.append(cloud)
    xyz = torch.cat(clouds)
    points = torch.cat([xyz, torch.zeros(len(xyz), 1)], dim=1)
    batch_index = torch.randint(
        0, BATCH, (len(points),), generator=torch.Generator().manual_seed(2)
    )
    assert_cells_match_brute_force(points, batch_index, grid)


@pytest.mark.parametrize("grid", GRIDS, ids=["voxels", "pillars", "odd"])
def test_coords_unique_sorted_and_each_voxel_in_one_batch_item(grid: VoxelGrid) -> None:
    points, batch_index = random_cloud(grid, 800, torch.Generator().manual_seed(11))
    voxels = voxelize(points, batch_index, grid, BATCH)
    coords = [tuple(c) for c in voxels.coords.tolist()]
    assert coords == sorted(set(coords))
    assert voxels.coords.dtype == voxels.point_voxel.dtype == torch.int64
    kept = torch.tensor([brute_force_cell(p, grid) is not None for p in points.double().tolist()])
    batches_of_voxel: dict[int, set[int]] = {}
    for voxel, b in zip(voxels.point_voxel.tolist(), batch_index[kept].tolist(), strict=True):
        batches_of_voxel.setdefault(voxel, set()).add(b)
    assert [batches_of_voxel[v] for v in range(len(coords))] == [{c[0]} for c in coords]


def test_the_same_cloud_in_two_batch_items_shares_no_voxel() -> None:
    points, _ = random_cloud(VOXEL_GRID, 300, torch.Generator().manual_seed(12))
    batch_index = torch.cat([torch.zeros(300, dtype=torch.long), torch.ones(300, dtype=torch.long)])
    voxels = voxelize(torch.cat([points, points]), batch_index, VOXEL_GRID, 2)
    alone = voxelize(points, torch.zeros(300, dtype=torch.long), VOXEL_GRID, 1)
    first, second = voxels.coords[voxels.coords[:, 0] == 0], voxels.coords[voxels.coords[:, 0] == 1]
    assert torch.equal(first, alone.coords)
    assert torch.equal(second[:, 1:], alone.coords[:, 1:])
    half = len(voxels.point_voxel) // 2
    assert set(voxels.point_voxel[:half].tolist()).isdisjoint(voxels.point_voxel[half:].tolist())


def test_points_outside_each_face_and_on_the_upper_bound_are_dropped_and_counted() -> None:
    (x0, y0, z0, x1, y1, z1) = VOXEL_GRID.point_range
    mid = [(x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2]
    outside, on_lower = [], []
    for axis, (lo, hi) in enumerate([(x0, x1), (y0, y1), (z0, z1)]):
        for value in (lo - 0.01, hi, hi + 0.3):
            outside.append([*mid[:axis], value, *mid[axis + 1 :], 0.5])
        on_lower.append([*mid[:axis], lo, *mid[axis + 1 :], 0.5])
    points = torch.tensor(outside + on_lower)
    # batch 0 gets the x and y faces, batch 2 the z faces; batch 1 only points on the lower bound
    batch_index = torch.tensor([0] * 6 + [2] * 3 + [1, 1, 2])
    voxels = voxelize(points, batch_index, VOXEL_GRID, BATCH)
    assert voxels.dropped.tolist() == [6, 0, 3]
    torch.testing.assert_close(voxels.points, points[9:], rtol=0, atol=0)
    nz, ny, nx = VOXEL_GRID.shape
    assert voxels.coords[voxels.point_voxel].tolist() == [
        [1, nz // 2, ny // 2, 0],
        [1, nz // 2, 0, nx // 2],
        [2, 0, ny // 2, nx // 2],
    ]


def test_a_grid_ends_at_the_point_range_and_at_its_last_whole_voxel() -> None:
    # x: 4.4 voxels, rounded down to 4 (ends at 2.0); y: 4.5 voxels, rounded up to 5 (ends at 1.5)
    grid = VoxelGrid(point_range=(0.0, -1.0, -1.0, 2.2, 1.25, 1.0), voxel_size=(0.5, 0.5, 0.5))
    assert grid.shape == (4, 5, 4)
    points = torch.tensor(
        [[2.1, 0.0, 0.0, 0], [1.99, 0.0, 0.0, 0], [1.0, 1.25, 0, 0], [1.0, 1.24, 0, 0]]
    )
    voxels = voxelize(points, torch.tensor([0, 0, 1, 1]), grid, 2)
    assert voxels.dropped.tolist() == [1, 1]
    assert voxels.coords[voxels.point_voxel].tolist() == [[0, 2, 2, 3], [1, 2, 4, 2]]


def test_empty_cloud_gives_no_voxels() -> None:
    voxels = voxelize(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), VOXEL_GRID, BATCH)
    assert voxels.coords.shape == (0, 4)
    assert voxels.point_voxel.shape == (0,)
    assert voxels.dropped.tolist() == [0] * BATCH
    assert PillarFeatureNet(channels=(8,), grid=VOXEL_GRID)(voxels).shape == (0, 8)


def test_non_finite_points_raise_naming_how_many() -> None:
    points, batch_index = random_cloud(VOXEL_GRID, 20, torch.Generator().manual_seed(3))
    points[4, 0] = float("nan")
    points[9, 2] = float("inf")
    with pytest.raises(ValueError, match="2 of 20 points"):
        voxelize(points, batch_index, VOXEL_GRID, BATCH)


def test_bad_batch_index_raises() -> None:
    points, batch_index = random_cloud(VOXEL_GRID, 10, torch.Generator().manual_seed(4))
    with pytest.raises(ValueError, match="batch_index"):
        voxelize(points, batch_index + BATCH, VOXEL_GRID, BATCH)
    with pytest.raises(ValueError, match="batch_index"):
        voxelize(points, batch_index[:5], VOXEL_GRID, BATCH)


def randomise_norms(net: PillarFeatureNet, generator: torch.Generator) -> None:
    """Random running statistics and affine parameters, so eval-mode BN is far from identity."""
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            c = module.num_features
            module.running_mean.copy_(torch.randn(c, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(c, generator=generator))
            with torch.no_grad():
                module.weight.copy_(torch.randn(c, generator=generator))
                module.bias.copy_(torch.randn(c, generator=generator))


def slow_pillar_features(net: PillarFeatureNet, voxels: Voxels, grid: VoxelGrid) -> torch.Tensor:
    """The encoder one voxel at a time, with the offsets computed from the grid by hand."""
    rows = []
    for v, (_, z, y, x) in enumerate(voxels.coords.tolist()):
        points = voxels.points[voxels.point_voxel == v]
        xyz = points[:, :3]
        centre = torch.tensor(
            [grid.point_range[a] + (i + 0.5) * grid.voxel_size[a] for a, i in enumerate((x, y, z))]
        )
        h = net.layers[0](torch.cat([points, xyz - xyz.mean(dim=0), xyz - centre], dim=1))
        pooled = h.max(dim=0).values
        for layer in net.layers[1:]:
            h = layer(torch.cat([h, pooled.expand(len(h), -1)], dim=1))
            pooled = h.max(dim=0).values
        rows.append(pooled)
    return torch.stack(rows)


@pytest.mark.parametrize("grid", GRIDS, ids=["voxels", "pillars", "odd"])
def test_pillar_feature_net_matches_a_loop_over_voxels(grid: VoxelGrid) -> None:
    generator = torch.Generator().manual_seed(21)
    torch.manual_seed(0)
    net = PillarFeatureNet(channels=(16, 12, 8), grid=grid)
    randomise_norms(net, generator)
    net.eval()
    points, batch_index = random_cloud(grid, 400, generator)
    voxels = voxelize(points, batch_index, grid, BATCH)
    with torch.no_grad():
        out = net(voxels)
        expected = slow_pillar_features(net, voxels, grid)
    assert net.out_channels == 8
    assert out.shape == (len(voxels.coords), 8)
    torch.testing.assert_close(out, expected)


def test_gradients_reach_every_parameter() -> None:
    generator = torch.Generator().manual_seed(8)
    torch.manual_seed(1)
    net = PillarFeatureNet(channels=(16, 16), grid=PILLAR_GRID)
    points, batch_index = random_cloud(PILLAR_GRID, 300, generator)
    out = net(voxelize(points, batch_index, PILLAR_GRID, BATCH))
    (out * torch.randn(out.shape, generator=generator)).sum().backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
