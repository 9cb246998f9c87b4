"""ScatterFormer: SLA against a per-window loop, the window partition, depthwise convs against dense
convs, CWI's exact receptive field, gradients, input checks, the BEV output and attention weights."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
import torch.nn.functional as F

from apps.pointcloud.depthwise import DepthwiseSubMConv3d, submanifold_rulebook
from apps.pointcloud.scatterformer import (
    CrossWindowInteraction,
    Layout,
    ScatterFormer,
    ScatterFormerConfig,
    SLALayer,
    implied_weights,
    partition_windows,
)
from apps.pointcloud.sparse import sparse_tensor, to_dense, torch_threads
from tests.apps.pointcloud.voxels import random_coords

D, HEADS, IN_CHANNELS, EPS = 16, 2, 5, 1e-6
GRID = (8, 24, 24)
CONFIG = ScatterFormerConfig(
    d_model=D, n_heads=HEADS, d_ffn=32, stem_blocks=1, stage_layers=(1, 2), pool_heads=2,
    grid_height=8,
)  # fmt: skip
SIZES = (3, 0, 1, 150, 0, 40, 1)  # windows of 0, 1 and > 100 voxels in one packed sequence


def layout_of(coords: torch.Tensor, grid: tuple[int, int, int]) -> Layout:
    return Layout(coords, torch.tensor([0, len(coords)], dtype=torch.int32), grid, 2)


def cu_seqlens_of(sizes: tuple[int, ...]) -> torch.Tensor:
    return F.pad(torch.tensor(sizes).cumsum(0), (1, 0)).to(torch.int32)


def test_sla_layer_matches_per_window_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    layer = SLALayer(D, HEADS).eval()
    x = torch.randn(sum(SIZES), D, generator=gen)
    h = layer.norm(x)
    q, k, v = ((h @ w.weight.T).view(-1, HEADS, D // HEADS) for w in (layer.q, layer.k, layer.v))
    attended = torch.empty_like(x)
    bounds = cu_seqlens_of(SIZES).tolist()
    for start, end in itertools.pairwise(bounds):
        for head in range(HEADS):
            cols = slice(head * D // HEADS, (head + 1) * D // HEADS)
            scores = q[start:end, head].relu() @ k[start:end, head].relu().T
            attended[start:end, cols] = scores @ v[start:end, head] / (scores.sum(1, True) + EPS)
    expected = x + layer.proj(attended)
    actual = layer(x, cu_seqlens_of(SIZES))
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_partition_groups_voxels_by_window_column() -> None:
    gen = torch.Generator().manual_seed(1)
    crowded = torch.stack(
        torch.meshgrid(torch.arange(8), torch.arange(4), torch.arange(4), indexing="ij"), -1
    )
    crowded = F.pad(crowded.reshape(-1, 3), (1, 0))  # 128 voxels in batch 0's first window
    lonely = torch.tensor([[0, 3, 20, 13]])  # alone in its window
    others = random_coords(gen, 200, GRID)
    others = others[(others[:, 0] == 1) | (others[:, 2] >= 12)]  # away from those two windows
    others = others[~((others[:, 0] == 0) & (others[:, 2] >= 12) & (others[:, 3] >= 12))]
    coords = torch.cat([others, crowded, lonely])[torch.randperm(len(others) + 129, generator=gen)]
    order, cu_seqlens = partition_windows(coords, GRID, 12)
    assert sorted(order.tolist()) == list(range(len(coords)))
    window_of = [(b, y // 12, x // 12) for b, _, y, x in coords[order].tolist()]
    segments = [window_of[s:e] for s, e in itertools.pairwise(cu_seqlens.tolist())]
    assert cu_seqlens.dtype == torch.int32 and cu_seqlens[-1] == len(coords)
    assert all(len(set(segment)) == 1 for segment in segments)
    assert len({segment[0] for segment in segments}) == len(segments) == len(set(window_of))
    assert {1, 128} <= {len(segment) for segment in segments}


@pytest.mark.parametrize("kernel", [(3, 3, 3), (1, 1, 5), (1, 5, 1), (3, 1, 5)])
def test_depthwise_conv_matches_dense_grouped_conv(kernel: tuple[int, int, int]) -> None:
    gen = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    grid, channels = (4, 10, 12), 3
    coords = random_coords(gen, 250, grid)
    x = torch.randn(len(coords), channels, generator=gen)
    conv = DepthwiseSubMConv3d(channels, kernel)
    dense = to_dense(sparse_tensor(x, coords, grid, 2))
    weight = conv.weight.T.reshape(channels, 1, *kernel)
    padding = tuple(size // 2 for size in kernel)
    expected = F.conv3d(dense, weight, padding=padding, groups=channels)
    b, z, y, xi = coords.unbind(1)
    actual = conv(x, submanifold_rulebook(coords, grid, 2, kernel))
    torch.testing.assert_close(actual, expected[b, :, z, y, xi], atol=1e-5, rtol=1e-5)


def within_reach(offset: tuple[int, int, int], half_line: int) -> bool:
    """Whether CWI's kernels connect voxels ``offset`` (dz, dy, dx) apart."""
    dz, dy, dx = offset
    in_box = max(abs(dz), abs(dy), abs(dx)) <= 1
    on_x_line = dz == 0 and dy == 0 and abs(dx) <= half_line
    on_y_line = dz == 0 and dx == 0 and abs(dy) <= half_line
    return in_box or on_x_line or on_y_line


def test_cwi_changes_only_voxels_within_its_kernels_reach() -> None:
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    grid, centre = (4, 24, 24), (0, 2, 12, 12)
    edges = [
        (0, 0, 6),
        (0, 0, -7),
        (0, -6, 0),
        (0, 7, 0),
        (1, 1, 1),
        (1, 0, 2),
        (0, 1, 2),
        (1, 0, 6),
    ]
    placed = [centre, (1, 2, 12, 12)] + [(0, 2 + dz, 12 + dy, 12 + dx) for dz, dy, dx in edges]
    coords = torch.cat([torch.tensor(placed), random_coords(gen, 600, grid)])
    keys = coords[:, 0] * 10_000 + coords[:, 1] * 1000 + coords[:, 2] * 30 + coords[:, 3]
    coords = coords[first_rows(keys)]  # the placed voxels first, no duplicates
    layer = CrossWindowInteraction(D, 32, length=13).eval()
    x = torch.randn(len(coords), D, generator=gen)
    perturbed = x.clone()
    perturbed[0] += torch.randn(D, generator=gen)  # row 0 is the centre voxel
    layout = layout_of(coords, grid)
    changed = (layer(perturbed, layout) - layer(x, layout)).abs().amax(1) > 1e-6
    offsets = (coords[:, 1:] - coords[0, 1:]).tolist()
    expected = [
        b == 0 and within_reach(tuple(offset), 6)
        for b, offset in zip(coords[:, 0].tolist(), offsets, strict=True)
    ]
    assert changed.tolist() == expected
    assert sum(expected) > 10


def first_rows(keys: torch.Tensor) -> list[int]:
    """The first row of every distinct key, in row order."""
    seen: dict[int, int] = {}
    for row, key in enumerate(keys.tolist()):
        seen.setdefault(key, row)
    return sorted(seen.values())


def test_gradients_reach_every_parameter_through_spconv() -> None:
    gen = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    model = ScatterFormer(IN_CHANNELS, CONFIG).train()
    coords = random_coords(gen, 300, GRID)
    features = torch.randn(len(coords), IN_CHANNELS, generator=gen, requires_grad=True)
    out, _, _ = model(features, coords, GRID)
    (out * torch.randn(out.shape, generator=gen)).sum().backward()
    for name, parameter in [("features", features), *model.named_parameters()]:
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ((0, 0, 3, -1), r"\(0, 0, 3, -1\) outside the grid \(nz, ny, nx\) = \(8, 24, 24\)"),
        ((1, 8, 3, 4), r"\(1, 8, 3, 4\) outside the grid"),
        ((0, 2, 24, 4), r"\(0, 2, 24, 4\) outside the grid"),
        ((-1, 2, 3, 4), r"\(-1, 2, 3, 4\) outside the grid"),
    ],
)
def test_bad_coordinates_raise(row: tuple[int, int, int, int], message: str) -> None:
    coords = random_coords(torch.Generator().manual_seed(5), 50, GRID)
    coords[17] = torch.tensor(row)
    model = ScatterFormer(IN_CHANNELS, CONFIG)
    with pytest.raises(ValueError, match=r"voxel 17 has coordinate \(b, z, y, x\) = " + message):
        model(torch.randn(50, IN_CHANNELS), coords, GRID)


def footprint(cells: set[tuple[int, int, int]], stride: int, size: int) -> set[tuple[int, ...]]:
    """Cells (b, y, x) a 3×3 conv with ``stride`` and padding 1 outputs from input ``cells``."""
    out_size = -(-size // stride)
    reach = range(out_size)
    return {
        (b, oy, ox)
        for b, y, x in cells
        for oy in reach
        if abs(oy * stride - y) <= 1
        for ox in reach
        if abs(ox * stride - x) <= 1
    }


@pytest.mark.parametrize("strides", [((2, 2, 2),), ((2, 2, 2), (1, 2, 2))])
def test_output_is_bev_at_xy_stride(strides: tuple[tuple[int, int, int], ...]) -> None:
    gen = torch.Generator().manual_seed(6)
    torch.manual_seed(6)
    config = dataclasses.replace(
        CONFIG, stage_layers=(1,) * (len(strides) + 1), stage_strides=strides
    )
    model = ScatterFormer(IN_CHANNELS, config).eval()
    coords = random_coords(gen, 200, GRID)
    out, out_coords, out_grid = model(torch.randn(200, IN_CHANNELS, generator=gen), coords, GRID)
    xy_stride = 2 ** len(strides)
    assert model.xy_stride == xy_stride and model.out_channels == D
    assert out_grid == (1, -(-GRID[1] // xy_stride), -(-GRID[2] // xy_stride))
    assert out.shape == (len(out_coords), D) and (out_coords[:, 1] == 0).all()
    expected = {(b, y, x) for b, _, y, x in coords.tolist()}
    size = GRID[1]
    for _, y_stride, _ in strides:
        expected, size = footprint(expected, y_stride, size), -(-size // y_stride)
    got = [(b, y, x) for b, _, y, x in out_coords.tolist()]
    assert len(got) == len(set(got)) and set(got) == expected


def test_implied_weights_sum_to_one_and_reproduce_attention() -> None:
    gen = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    layer = SLALayer(D, HEADS).eval()
    x, cu_seqlens = torch.randn(sum(SIZES), D, generator=gen), cu_seqlens_of(SIZES)
    q, k, v = layer.project(x)
    weights = implied_weights(q, k, cu_seqlens)
    attended = layer.attend(x, cu_seqlens)
    bounds = cu_seqlens.tolist()
    assert [w.shape for w in weights] == [(HEADS, n, n) for n in SIZES]
    for w, start, end in zip(weights, bounds[:-1], bounds[1:], strict=True):
        mass = torch.einsum("lhd,mhd->hl", q[start:end].relu(), k[start:end].relu())
        sums = w.sum(-1)
        assert (sums >= 0).all() and (
            sums <= 1 + 1e-6
        ).all()  # a query meeting only zero keys sums to 0
        torch.testing.assert_close(sums[mass > 0.1], torch.ones_like(sums[mass > 0.1]))
        reproduced = torch.einsum("hlm,mhe->lhe", w, v[start:end]).flatten(1)
        torch.testing.assert_close(reproduced, attended[start:end], atol=1e-5, rtol=1e-5)


@pytest.fixture
def one_thread():
    """CPU ``index_add`` sums in thread order, and SLA's division by φ(q)·z + 1e-6 can blow the
    last-bit differences between two forwards of one input past any tolerance: one thread."""
    with torch_threads(1):
        yield


def test_layer_queries_keys_are_those_the_layer_sees(one_thread) -> None:
    gen = torch.Generator().manual_seed(8)
    torch.manual_seed(8)
    model = ScatterFormer(IN_CHANNELS, CONFIG).eval()
    coords = random_coords(gen, 300, GRID)
    features = torch.randn(300, IN_CHANNELS, generator=gen)
    attention = model.stages[1][0].attention  # layer 1: the second stage's first
    inputs: list[torch.Tensor] = []
    hook = attention.register_forward_pre_hook(lambda _, args: inputs.append(args[0]))
    model(features, coords, GRID)
    hook.remove()
    got = model.layer_queries_keys(features, coords, GRID, layer=1)
    h = attention.norm(inputs[0])
    torch.testing.assert_close(got.q.flatten(1), h @ attention.q.weight.T)
    torch.testing.assert_close(got.k.flatten(1), h @ attention.k.weight.T)
    windows = [(b, y // 12, x // 12) for b, _, y, x in got.coords.tolist()]
    bounds = got.cu_seqlens.tolist()
    assert [len(set(windows[s:e])) for s, e in itertools.pairwise(bounds)] == [1] * len(bounds[1:])
    assert got.grid_shape == (2, 12, 12)
    with pytest.raises(ValueError, match="layer 3 out of range"):
        model.layer_queries_keys(features, coords, GRID, layer=3)


def test_partition_is_timed_under_its_profiler_label() -> None:
    gen = torch.Generator().manual_seed(9)
    model = ScatterFormer(IN_CHANNELS, CONFIG).eval()
    coords = random_coords(gen, 100, GRID)
    with torch.profiler.profile() as profile:
        model(torch.randn(100, IN_CHANNELS, generator=gen), coords, GRID)
    labels = [event.name for event in profile.events()]
    assert labels.count("pointcloud/partition") == len(CONFIG.stage_layers)


@pytest.mark.parametrize(
    "changes",
    [{"stage_strides": ((2, 2, 1),)}, {"stage_strides": ()}, {"cwi_kernel": 12}, {"n_heads": 3}],
)
def test_bad_configs_raise(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(CONFIG, **changes)


def test_grid_taller_than_configured_raises() -> None:
    coords = random_coords(torch.Generator().manual_seed(10), 50, GRID)
    with pytest.raises(ValueError, match=r"higher than config\.grid_height"):
        ScatterFormer(IN_CHANNELS, CONFIG)(torch.randn(50, IN_CHANNELS), coords, (9, 24, 24))
