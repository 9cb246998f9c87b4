"""Dynamic set partition against a brute-force Python loop over windows."""

from __future__ import annotations

import math

import pytest
import torch

from apps.pointcloud.sets import SetPartition, partition_sets, window_partition

GRID = (3, 20, 23)  # (nz, ny, nx)
WINDOW = (5, 4, 2)  # (wx, wy, wz)
TAU = 6


def random_coords(
    gen: torch.Generator, count: int, grid: tuple[int, int, int] = GRID, batch: int = 2
) -> torch.Tensor:
    """``count`` distinct voxels ``[count, 4]`` (b, z, y, x) spread over ``batch`` items."""
    nz, ny, nx = grid
    cells = torch.randperm(batch * nz * ny * nx, generator=gen)[:count]
    x, rest = cells % nx, cells // nx
    y, rest = rest % ny, rest // ny
    z, b = rest % nz, rest // nz
    return torch.stack((b, z, y, x), 1)


def brute_windows(
    coords: torch.Tensor, window: tuple[int, int, int], shifted: bool
) -> tuple[dict[tuple[int, ...], list[int]], list[tuple[int, int, int]]]:
    """Voxels grouped by (batch, window x, window y, window z), and each voxel's in-window (x, y, z)."""
    wx, wy, wz = window
    sx, sy = (wx // 2, wy // 2) if shifted else (0, 0)
    groups: dict[tuple[int, ...], list[int]] = {}
    inside = []
    for v, (b, z, y, x) in enumerate(coords.tolist()):
        groups.setdefault((b, (x + sx) // wx, (y + sy) // wy, z // wz), []).append(v)
        inside.append(((x + sx) % wx, (y + sy) % wy, z % wz))
    return groups, inside


def brute_sets(
    coords: torch.Tensor, window: tuple[int, int, int], tau: int, shifted: bool, axis: str
) -> dict[tuple[int, ...], list[list[int]]]:
    """Per window, its sets as lists of τ voxel indices, one window at a time."""
    groups, inside = brute_windows(coords, window, shifted)
    result = {}
    for key, members in groups.items():

        def order(v: int) -> tuple[int, int, int]:
            x, y, z = inside[v]
            return (x, y, z) if axis == "x" else (y, x, z)

        ordered = sorted(members, key=order)
        n = len(ordered)
        s = math.ceil(n / tau)
        result[key] = [
            [ordered[math.floor((j * tau + k) * n / (s * tau))] for k in range(tau)]
            for j in range(s)
        ]
    return result


def check_against_brute_force(
    coords: torch.Tensor, part: SetPartition, tau: int, shifted: bool, axis: str
) -> None:
    expected = brute_sets(coords, WINDOW, tau, shifted, axis)
    groups, _ = brute_windows(coords, WINDOW, shifted)
    window_ids, _ = window_partition(coords, GRID, WINDOW, shifted)
    assert part.slots.shape[0] == sum(len(sets) for sets in expected.values())
    for key, sets in expected.items():
        rows = part.slots[part.window == window_ids[groups[key][0]]]
        assert rows.tolist() == sets
        distinct = {v for row in sets for v in row}
        assert distinct == set(groups[key])  # the window's voxels, each at least once
        if len(groups[key]) == len(sets) * tau:
            assert all(len(set(row)) == tau for row in sets)  # no duplicates when N = Sτ


def check_derived_fields(part: SetPartition, num_voxels: int) -> None:
    """valid, tokens, cu_seqlens and owner, from slots, one set at a time."""
    tokens = []
    for row, valid in zip(part.slots.tolist(), part.valid.tolist(), strict=True):
        expected_valid = [k == 0 or row[k] != row[k - 1] for k in range(len(row))]
        assert valid == expected_valid
        kept = [v for v, keep in zip(row, valid, strict=True) if keep]
        assert len(set(kept)) == len(kept)  # valid masks every duplicate
        tokens.append(kept)
    assert part.tokens.tolist() == [v for kept in tokens for v in kept]
    assert part.cu_seqlens.dtype == torch.int32
    assert part.cu_seqlens.tolist() == [0, *torch.tensor([len(t) for t in tokens]).cumsum(0)]
    flat = part.tokens.tolist()
    assert part.owner.tolist() == [flat.index(v) for v in range(num_voxels)]


@pytest.mark.parametrize("shifted", [False, True])
def test_window_partition_matches_brute_force(shifted: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    coords = random_coords(gen, 600)
    window, inside = window_partition(coords, GRID, WINDOW, shifted)
    groups, expected_inside = brute_windows(coords, WINDOW, shifted)
    assert inside.tolist() == [list(t) for t in expected_inside]
    ids_per_group = [set(window[members].tolist()) for members in groups.values()]
    assert all(len(ids) == 1 for ids in ids_per_group)  # one id per window
    assert len(set.union(*ids_per_group)) == len(groups)  # distinct windows, distinct ids


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("axis", ["x", "y"])
def test_partition_matches_brute_force(shifted: bool, axis: str) -> None:
    gen = torch.Generator().manual_seed(1)
    coords = random_coords(gen, 900)
    part = partition_sets(coords, GRID, WINDOW, TAU, shifted, axis)
    check_against_brute_force(coords, part, TAU, shifted, axis)
    check_derived_fields(part, len(coords))


def test_special_window_sizes() -> None:
    """Windows of 1, τ, τ+1 and 3τ+5 voxels, in both batch items."""
    gen = torch.Generator().manual_seed(2)
    wx, wy, wz = WINDOW
    sizes = [1, TAU, TAU + 1, 3 * TAU + 5]
    pieces = []
    for b in range(2):
        for i, n in enumerate(sizes):  # window (i, b) along x, y
            cell = torch.randperm(wx * wy * wz, generator=gen)[:n]
            x, y, z = cell % wx + i * wx, cell // wx % wy + b * wy, cell // (wx * wy)
            pieces.append(torch.stack((torch.full_like(x, b), z, y, x), 1))
    coords = torch.cat(pieces)
    for axis in ("x", "y"):
        part = partition_sets(coords, GRID, WINDOW, TAU, False, axis)
        check_against_brute_force(coords, part, TAU, False, axis)
        check_derived_fields(part, len(coords))
        sets_per_window = torch.unique_consecutive(part.window, return_counts=True)[1]
        assert sets_per_window.tolist() == [math.ceil(n / TAU) for n in sizes] * 2
        duplicates = (~part.valid).sum(1).split(sets_per_window.tolist())
        expected = [math.ceil(n / TAU) * TAU - n for n in sizes] * 2
        assert [int(d.sum()) for d in duplicates] == expected  # duplicates only when N < Sτ


def test_shifted_windows_differ_and_cover() -> None:
    gen = torch.Generator().manual_seed(3)
    coords = random_coords(gen, 500)
    groupings = []
    for shifted in (False, True):
        part = partition_sets(coords, GRID, WINDOW, TAU, shifted)
        assert sorted(set(part.tokens.tolist())) == list(range(len(coords)))
        set_of_voxel = torch.searchsorted(part.cu_seqlens[1:].long(), part.owner, right=True)
        window = part.window[set_of_voxel]
        groupings.append(window[:, None] == window[None, :])
    assert not torch.equal(*groupings)


def test_batch_items_never_share_a_window() -> None:
    gen = torch.Generator().manual_seed(4)
    one = random_coords(gen, 200, batch=1)
    coords = torch.cat((one, one + torch.tensor([1, 0, 0, 0])))  # same cells in item 1
    for shifted in (False, True):
        window, _ = window_partition(coords, GRID, WINDOW, shifted)
        assert not set(window[:200].tolist()) & set(window[200:].tolist())
        part = partition_sets(coords, GRID, WINDOW, TAU, shifted, "y")
        batch_of_slot = coords[part.slots, 0]
        assert (batch_of_slot == batch_of_slot[:, :1]).all()


def test_owner_holds_its_voxel() -> None:
    gen = torch.Generator().manual_seed(5)
    coords = random_coords(gen, 300)
    part = partition_sets(coords, GRID, WINDOW, TAU, True, "x")
    assert torch.equal(part.tokens[part.owner], torch.arange(len(coords)))


def test_rejects_bad_arguments() -> None:
    coords = torch.zeros(1, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match="axis"):
        partition_sets(coords, GRID, WINDOW, TAU, axis="z")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="set_size"):
        partition_sets(coords, GRID, WINDOW, 0)
