"""Random sparse voxels the backbone tests share."""

from __future__ import annotations

import torch


def random_coords(gen: torch.Generator, count: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """``count`` distinct voxels ``[count, 4]`` (b, z, y, x) over two batch items."""
    nz, ny, nx = grid
    cells = torch.randperm(2 * nz * ny * nx, generator=gen)[:count]
    x, rest = cells % nx, cells // nx
    y, rest = rest % ny, rest // ny
    return torch.stack((rest // nz, rest % nz, y, x), 1)
