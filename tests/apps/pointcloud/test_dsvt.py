"""DSVT backbone: set attention against a per-set loop, locality, shapes, gradients, pooling."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import apps.pointcloud.dsvt as dsvt_module
from apps.pointcloud.dsvt import DSVT, AttentionPoolZ, DSVTConfig, SetAttention
from apps.pointcloud.sets import SetPartition, partition_sets
from tests.apps.pointcloud.voxels import random_coords

D, HEADS, TAU = 16, 2, 8
PILLAR = DSVTConfig(
    d_model=D, n_heads=HEADS, d_ffn=32, blocks=2, window_shape=(4, 4, 1), set_size=TAU
)
VOXEL = dataclasses.replace(PILLAR, blocks=1, window_shape=(4, 4, 8), z_pool_strides=(2, 4))
PILLAR_GRID, VOXEL_GRID = (1, 20, 20), (8, 20, 20)


def hand_made_partition() -> SetPartition:
    """Seven voxels in three sets of four: voxel 6 straddles sets 0 and 1, duplicates masked."""
    slots = torch.tensor([[3, 0, 0, 6], [6, 2, 5, 5], [1, 1, 4, 4]])
    valid = torch.tensor([[1, 1, 0, 1], [1, 1, 1, 0], [1, 0, 1, 0]], dtype=torch.bool)
    return SetPartition(
        slots=slots,
        valid=valid,
        tokens=torch.tensor([3, 0, 6, 6, 2, 5, 1, 4]),
        cu_seqlens=torch.tensor([0, 3, 6, 8], dtype=torch.int32),
        owner=torch.tensor([1, 6, 4, 0, 7, 5, 2]),
        window=torch.tensor([0, 0, 1]),
        in_window=torch.zeros(7, 3, dtype=torch.int64),
    )


def set_attention_reference(
    layer: SetAttention, x: torch.Tensor, pos: torch.Tensor, slots: torch.Tensor
) -> torch.Tensor:
    """One set at a time: its distinct voxels attend densely; a voxel keeps its first set's output."""
    attended = torch.full_like(x, float("nan"))
    done: set[int] = set()
    for row in slots.tolist():
        members = [v for k, v in enumerate(row) if k == 0 or v != row[k - 1]]
        out = layer.attn((x[members] + pos[members])[None], value=x[members][None])[0]
        for i, v in enumerate(members):
            if v not in done:
                attended[v] = out[i]
                done.add(v)
    h = layer.norm1(x + attended)
    return layer.norm2(h + layer.ffn(h))


@pytest.mark.parametrize("source", ["hand-made", "partition_sets"])
def test_set_attention_matches_per_set_reference(source: str) -> None:
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if source == "hand-made":
        part = hand_made_partition()
    else:
        coords = random_coords(gen, 300, PILLAR_GRID)
        part = partition_sets(coords, PILLAR_GRID, (4, 4, 1), TAU, shifted=True, axis="y")
    voxels = len(part.owner)
    x, pos = torch.randn(voxels, D, generator=gen), torch.randn(voxels, D, generator=gen)
    layer = SetAttention(D, HEADS, 32).eval()
    expected = set_attention_reference(layer, x, pos, part.slots)
    torch.testing.assert_close(layer(x, pos, part), expected, atol=1e-5, rtol=1e-5)


def test_attention_stays_within_sets() -> None:
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    coords = random_coords(gen, 300, PILLAR_GRID)
    part = partition_sets(coords, PILLAR_GRID, (4, 4, 1), TAU, shifted=False, axis="x")
    sets_per_voxel = (part.slots[..., None] == torch.arange(len(coords))).any(1).sum(0)
    victim = int(torch.argmax(sets_per_voxel))  # a voxel in two sets where there is one
    layer = SetAttention(D, HEADS, 32).eval()
    x, pos = torch.randn(len(coords), D, generator=gen), torch.randn(len(coords), D, generator=gen)
    bumped = x.clone()
    bumped[victim] += 1.0
    changed = (layer(bumped, pos, part) - layer(x, pos, part)).abs().amax(1) > 1e-6
    victim_sets = {s for s, row in enumerate(part.slots.tolist()) if victim in row}
    owner_set = torch.searchsorted(part.cu_seqlens[1:].long(), part.owner, right=True)
    allowed = torch.tensor([int(s) in victim_sets for s in owner_set])
    assert torch.equal(changed, allowed)


@pytest.mark.parametrize("variant", ["pillar", "voxel"])
def test_shapes_and_gradients_reach_every_parameter(variant: str) -> None:
    gen = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    config, grid, count = (
        (PILLAR, PILLAR_GRID, 300) if variant == "pillar" else (VOXEL, VOXEL_GRID, 500)
    )
    coords = random_coords(gen, count, grid)
    model = DSVT(5, config)
    out, out_coords, out_grid = model(torch.randn(count, 5, generator=gen), coords, grid)
    bev = {(b, y, x) for b, _, y, x in coords.tolist()}
    assert out.shape == (len(bev), D) and model.out_channels == D
    assert out_grid == (1, *grid[1:])
    assert (out_coords[:, 1] == 0).all()
    assert {(b, y, x) for b, _, y, x in out_coords.tolist()} == bev
    if variant == "pillar":
        assert torch.equal(out_coords, coords)
    (out * torch.randn(out.shape, generator=gen)).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.isfinite().all(), name
        assert param.grad.abs().sum() > 0, name


def test_partitions_are_made_once_per_configuration_and_axis(monkeypatch) -> None:
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[4:])
        return partition_sets(*args, **kwargs)

    monkeypatch.setattr(dsvt_module, "partition_sets", counting)
    gen = torch.Generator().manual_seed(3)
    coords = random_coords(gen, 200, PILLAR_GRID)
    model = DSVT(D, dataclasses.replace(PILLAR, blocks=4))
    model(torch.randn(200, D, generator=gen), coords, PILLAR_GRID)
    assert sorted(calls) == [(False, "x"), (False, "y"), (True, "x"), (True, "y")]


def attention_pool_reference(
    pool: AttentionPoolZ, x: torch.Tensor, coords: torch.Tensor
) -> dict[tuple[int, ...], torch.Tensor]:
    """Per pooled voxel, attention over only the voxels present (no mask needed)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for v, (b, z, y, x_index) in enumerate(coords.tolist()):
        groups.setdefault((b, z // pool.stride, y, x_index), []).append(v)
    result = {}
    for cell, members in groups.items():
        slots = coords[members, 1] % pool.stride
        query = x[members].amax(0)
        keys = x[members] + pool.slot_embedding[slots]
        out = pool.attn(query[None, None], keys[None], value=x[members][None])[0, 0]
        result[cell] = pool.norm(out + query)
    return result


def test_attention_pool_masks_empty_slots() -> None:
    gen = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    grid, stride = (8, 6, 6), 4
    coords = random_coords(gen, 300, grid)  # ~700 cells: most pooled voxels miss some slots
    x = torch.randn(len(coords), D, generator=gen)
    pool = AttentionPoolZ(D, HEADS, stride)
    torch.nn.init.normal_(pool.slot_embedding)
    out, out_coords, out_grid = pool(x, coords, grid)
    expected = attention_pool_reference(pool, x, coords)
    assert out_grid == (2, 6, 6)
    assert out_coords.tolist() == [list(cell) for cell in sorted(expected)]
    torch.testing.assert_close(out, torch.stack([expected[c] for c in sorted(expected)]))


def test_checkpointing_gives_same_output_and_gradients() -> None:
    gen = torch.Generator().manual_seed(5)
    coords = random_coords(gen, 500, VOXEL_GRID)
    features = torch.randn(len(coords), 5, generator=gen)
    weights = None
    results = []
    for checkpointing in (False, True):
        model = DSVT(5, dataclasses.replace(VOXEL, dropout=0.1, checkpointing=checkpointing))
        if weights is None:
            weights = {name: value.clone() for name, value in model.state_dict().items()}
        model.load_state_dict(weights)
        calls: list[int] = []
        model.stages[0][0].layers[0].register_forward_hook(lambda *_, seen=calls: seen.append(1))
        torch.manual_seed(6)
        out, _, _ = model(features, coords, VOXEL_GRID)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        assert len(calls) == (2 if checkpointing else 1)  # recomputed in the backward
        grads = {n: p.grad for n, p in model.named_parameters()}
        results.append((out.detach(), grads, model.state_dict()))
    (out_a, grads_a, state_a), (out_b, grads_b, state_b) = results
    torch.testing.assert_close(out_a, out_b)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], msg=name)
    for name in state_a:  # BatchNorm statistics updated once per forward either way
        torch.testing.assert_close(state_a[name], state_b[name], msg=name)


def test_rejects_bad_configurations() -> None:
    with pytest.raises(ValueError, match="activation"):
        DSVTConfig(activation="swish")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="BEV"):
        DSVT(D, PILLAR)(torch.zeros(1, D), torch.zeros(1, 4, dtype=torch.int64), (2, 20, 20))
