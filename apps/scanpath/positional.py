"""OAT's object positional code (§3.2): one fixed vector per cell of the display's grid, chosen so
that the cosine similarity of two cells' codes is a Gaussian of their grid distance.

The paper fits its table with Adam to the target similarities ``exp(-d² / 2σ²)`` (σ = 2). That
target matrix is a Gaussian kernel, hence positive semi-definite, so the fit has an exact solution:
the rows of its matrix square root. We take it in closed form (an eigendecomposition, no
optimisation loop) and spread it over all ``dim`` features with a fixed random rotation, which
keeps every cosine. Grids with more cells than ``dim`` keep the ``dim`` largest eigen-directions,
the best rank-``dim`` fit.
"""

from __future__ import annotations

import torch


def gaussian_similarity(grid: tuple[int, int], sigma: float) -> torch.Tensor:
    """``[P, P]`` with P = rows·cols: ``exp(-|p_i - p_j|² / 2σ²)`` between cells in row-major order."""
    rows, cols = grid
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    cells = torch.stack([r.reshape(-1), c.reshape(-1)], dim=1).double()
    return torch.exp(-torch.cdist(cells, cells).square() / (2 * sigma**2))


def gaussian_position_codes(
    grid: tuple[int, int], dim: int, sigma: float = 2.0, seed: int = 0
) -> torch.Tensor:
    """``[rows·cols, dim]`` float32 codes, row-major over the grid, each of norm √dim, whose cosine
    similarities equal :func:`gaussian_similarity` (exactly when rows·cols ≤ dim)."""
    kernel = gaussian_similarity(grid, sigma)
    eigenvalues, eigenvectors = torch.linalg.eigh(kernel)  # ascending
    keep = min(dim, len(kernel))
    roots = eigenvalues[-keep:].clamp_min(0).sqrt()
    codes = eigenvectors[:, -keep:] * roots  # [P, keep]: codes @ codes.T ≈ kernel
    codes = codes / codes.norm(dim=1, keepdim=True)  # unit diagonal also when truncated
    generator = torch.Generator().manual_seed(seed)
    rotation, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return (codes @ rotation[:keep] * dim**0.5).float()
