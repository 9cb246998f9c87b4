"""DSVT's dynamic set partition (Wang et al., CVPR 2023, §3.1): windows, then equal-size sets.

The voxels of a window are sorted along x or y (the "rotated sets" of a block's two layers) and split
into S = ⌈N/τ⌉ sets of τ slots, slot k of set j taking sorted voxel ⌊(jτ + k)·N / (Sτ)⌋ (the paper's
Eq. 3): every voxel lands in some slot, and a voxel fills several consecutive slots only when N < Sτ.
Everything is tensor arithmetic over all windows at once (no ``.item()``, no Python loop over data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Axis = Literal["x", "y"]


@dataclass
class SetPartition:
    """The sets of one window configuration and one sorting axis.

    slots: int64 ``[S_total, τ]`` voxel index of each slot, sets grouped by window.
    valid: bool ``[S_total, τ]`` False for a slot repeating the previous slot's voxel (duplicates are
        consecutive within a set, so these are exactly the duplicates).
    tokens: int64 ``[T]`` = ``slots[valid]``: each set's distinct voxels, set after set.
    cu_seqlens: int32 ``[S_total + 1]`` offsets of each set's tokens in ``tokens``.
    owner: int64 ``[V]`` per voxel, the position in ``tokens`` of its first occurrence (a voxel may
        straddle two adjacent sets; it keeps the output of the first).
    window: int64 ``[S_total]`` window id of each set (as :func:`window_partition` numbers them).
    in_window: int64 ``[V, 3]`` (x, y, z) of each voxel inside its window.
    """

    slots: torch.Tensor
    valid: torch.Tensor
    tokens: torch.Tensor
    cu_seqlens: torch.Tensor
    owner: torch.Tensor
    window: torch.Tensor
    in_window: torch.Tensor


def window_partition(
    coords: torch.Tensor,
    grid_shape: tuple[int, int, int],
    window_shape: tuple[int, int, int] = (12, 12, 1),
    shifted: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Window id (int64 ``[V]``, unique over the batch) and in-window (x, y, z) (``[V, 3]``) per voxel.

    coords: int ``[V, 4]`` (batch, z, y, x); grid_shape (nz, ny, nx); window_shape (wx, wy, wz).
    The shifted configuration moves the grid by half a window in x and y (DSVT's shift lists move z by
    0), so each shifted window straddles four unshifted ones; windows along each axis number
    ⌈n/w⌉ + 1 to leave room for the shift.
    """
    if min(window_shape) < 1:
        raise ValueError(f"window_shape {window_shape} must be positive")
    wx, wy, wz = window_shape
    nz, ny, nx = grid_shape
    count_x, count_y, count_z = (-(-n // w) + 1 for n, w in ((nx, wx), (ny, wy), (nz, wz)))
    size = coords.new_tensor(window_shape, dtype=torch.int64)
    shift = coords.new_tensor([wx // 2, wy // 2, 0] if shifted else [0, 0, 0], dtype=torch.int64)
    xyz = coords[:, [3, 2, 1]].long() + shift
    win_x, win_y, win_z = torch.div(xyz, size, rounding_mode="floor").unbind(1)
    window = ((coords[:, 0].long() * count_z + win_z) * count_y + win_y) * count_x + win_x
    return window, xyz - torch.stack((win_x, win_y, win_z), 1) * size


def partition_sets(
    coords: torch.Tensor,
    grid_shape: tuple[int, int, int],
    window_shape: tuple[int, int, int] = (12, 12, 1),
    set_size: int = 36,
    shifted: bool = False,
    axis: Axis = "x",
) -> SetPartition:
    """Split each window's voxels, sorted x-major (``axis="x"``: key (window, x, y, z)) or y-major
    (``"y"``: (window, y, x, z)), into sets of ``set_size`` slots spread evenly over the window."""
    if set_size < 1:
        raise ValueError(f"set_size must be ≥ 1, got {set_size}")
    window, in_window = window_partition(coords, grid_shape, window_shape, shifted)
    order = torch.argsort(_sort_key(window, in_window, window_shape, axis))
    windows, counts = torch.unique_consecutive(window[order], return_counts=True)
    plan = _even_slots(counts, set_size)
    slots = order[plan.positions]
    valid = torch.ones_like(slots, dtype=torch.bool)
    valid[:, 1:] = slots[:, 1:] != slots[:, :-1]
    tokens = slots[valid]
    cu_seqlens = torch.zeros(slots.shape[0] + 1, dtype=torch.int32, device=coords.device)
    cu_seqlens[1:] = valid.sum(1).cumsum(0)
    return SetPartition(
        slots=slots,
        valid=valid,
        tokens=tokens,
        cu_seqlens=cu_seqlens,
        owner=_first_occurrence(tokens, coords.shape[0]),
        window=windows[plan.window],
        in_window=in_window,
    )


def _sort_key(
    window: torch.Tensor, in_window: torch.Tensor, window_shape: tuple[int, int, int], axis: Axis
) -> torch.Tensor:
    """int64 ``[V]`` ordering voxels by window, then x-major or y-major, then z."""
    wx, wy, wz = window_shape
    x, y, z = in_window.unbind(1)
    if axis == "x":
        return ((window * wx + x) * wy + y) * wz + z
    if axis == "y":
        return ((window * wy + y) * wx + x) * wz + z
    raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")


@dataclass
class _Slots:
    positions: torch.Tensor  # int64 [S_total, τ] index into the window-sorted voxel order
    window: torch.Tensor  # int64 [S_total] index of each set's window among the non-empty windows


def _even_slots(counts: torch.Tensor, set_size: int) -> _Slots:
    """Eq. 3 for windows of ``counts`` voxels (``[W]``, laid out one after another): set j of a
    window of N voxels and S = ⌈N/τ⌉ sets takes voxels ⌊(jτ + k)·N / (Sτ)⌋, k < τ."""
    sets = torch.div(counts + set_size - 1, set_size, rounding_mode="floor")  # [W]
    window = torch.repeat_interleave(torch.arange(counts.shape[0], device=counts.device), sets)
    first_set = sets.cumsum(0) - sets
    set_in_window = torch.arange(window.shape[0], device=counts.device) - first_set[window]
    slot = set_in_window[:, None] * set_size + torch.arange(set_size, device=counts.device)
    n, total = counts[window, None], sets[window, None] * set_size
    first_voxel = counts.cumsum(0) - counts
    return _Slots(
        first_voxel[window, None] + torch.div(slot * n, total, rounding_mode="floor"), window
    )


def _first_occurrence(tokens: torch.Tensor, num_voxels: int) -> torch.Tensor:
    """int64 ``[V]``: for each voxel the smallest position in ``tokens`` that holds it."""
    positions = torch.arange(tokens.shape[0], device=tokens.device)
    owner = torch.full((num_voxels,), tokens.shape[0], dtype=torch.int64, device=tokens.device)
    return owner.scatter_reduce(0, tokens, positions, reduce="amin", include_self=True)
