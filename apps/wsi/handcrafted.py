"""ColourTexture: a built-in tile feature extractor with no weights to download — colour, stain and
texture statistics, computed in torch over the whole batch at once. Deterministic; a baseline and
a way to run the app offline, not a substitute for a pathology foundation model."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from apps.wsi.slides import check_tiles

# Ruifrok & Johnston (2001) optical densities of haematoxylin, eosin and DAB (rows), normalised;
# OD = concentrations @ STAINS, so concentrations = OD @ STAINS⁻¹ (colour deconvolution).
STAINS = F.normalize(torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]]))
UNSTAIN = torch.linalg.inv(STAINS)
LUMA = (0.299, 0.587, 0.114)
QUANTILES = (0.1, 0.5, 0.9)
BINS = 8
ORIENTATIONS = 6
LBP_TOLERANCE = 2 / 255  # a neighbour counts as brighter only by more than JPEG noise
HAEM_POSITIVE = 0.3  # haematoxylin concentration (OD units) of a stained nucleus pixel
BLOB_CONTRAST = 0.05  # a nucleus peak rises this much above its neighbourhood's mean
BLOB_SCALES = (1, 2)  # cells (px of the half-size tile) for small and large nuclei

# (name, width) of each group, in output order; ColourTexture.dim is their sum.
GROUPS = (
    ("rgb: mean, std, q10, q50, q90 of R, G, B", 15),
    ("stains: mean, std, q10, q50, q90 of haematoxylin, eosin, residual (DAB)", 15),
    ("colour: mean, std of total optical density and of HSV saturation", 4),
    ("hue: 8-bin hue histogram weighted by saturation", BINS),
    ("histograms: 8-bin histogram of R, G, B", 3 * BINS),
    ("gradient: Sobel magnitude mean, std, q50, q90, share > 0.05, share > 0.2", 6),
    ("orientation: 6-bin gradient-orientation histogram weighted by magnitude", ORIENTATIONS),
    ("lbp: rotation-invariant uniform LBP histograms (10 bins) at full and half size", 20),
    ("density: white, dark and haematoxylin shares; nuclei per 1000 px, small and large", 5),
    ("laplacian: mean |∇²|, std ∇²", 2),
)


def _halve(planes: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` → ``[B, C, H // 2, W // 2]``, each pixel the mean of a 2×2 block."""
    return F.avg_pool2d(planes, 2)


def _grey(rgb: torch.Tensor) -> torch.Tensor:
    """Luma ``[B, H, W]`` of RGB ``[B, 3, H, W]``."""
    red, green, blue = rgb.unbind(1)
    return LUMA[0] * red + LUMA[1] * green + LUMA[2] * blue


def _quantiles(flat: torch.Tensor) -> list[torch.Tensor]:
    """QUANTILES along the last axis of ``[..., N]``, each ``[...]`` (nearest rank)."""
    last = flat.shape[-1] - 1
    return [flat.kthvalue(round(q * last) + 1, dim=-1).values for q in QUANTILES]


def _moments(planes: torch.Tensor) -> torch.Tensor:
    """Mean, std and QUANTILES (of every 4th pixel, for speed) of each plane of ``[B, C, H, W]``
    → ``[B, 5 C]``."""
    flat = planes.flatten(2)
    spread = flat.std(-1, correction=0)
    return torch.cat([flat.mean(-1), spread, *_quantiles(flat[..., ::4])], dim=1)


def _counts(index: torch.Tensor, bins: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised histogram ``[R, bins]`` of integer bins ``index`` ``[R, N]`` (optionally
    weighted); an all-zero weight row stays all zero."""
    weights = torch.ones_like(index, dtype=torch.float32) if weights is None else weights
    hist = torch.zeros(index.shape[0], bins).scatter_add_(1, index, weights)
    return hist / hist.sum(1, keepdim=True).clamp_min(1e-6)


def _histogram(
    values: torch.Tensor, bins: int, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Normalised histogram ``[R, bins]`` of ``values`` ``[R, N]`` in [0, 1]."""
    return _counts((values * bins).long().clamp_(0, bins - 1), bins, weights)


def _colour(rgb: torch.Tensor, od: torch.Tensor) -> torch.Tensor:
    """Total-OD and saturation summaries ``[B, 4]`` and the hue histogram ``[B, BINS]``."""
    top, bottom = rgb.amax(1), rgb.amin(1)
    sat = ((top - bottom) / top.clamp_min(1e-6)).flatten(1)
    density = od.sum(1).flatten(1)
    red, green, blue = rgb.unbind(1)
    hue = torch.atan2(math.sqrt(3) * (green - blue), 2 * red - green - blue) / (2 * math.pi) % 1
    summary = [density.mean(1), density.std(1, correction=0), sat.mean(1), sat.std(1, correction=0)]
    return torch.cat([torch.stack(summary, 1), _histogram(hue.flatten(1), BINS, sat)], dim=1)


def _sobel(grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel derivatives d/dx, d/dy of ``[B, H, W]``, each ``[B, H - 2, W - 2]`` (scaled by 1/4,
    so a unit step gives 1)."""
    cols = grey[:, :-2] + 2 * grey[:, 1:-1] + grey[:, 2:]  # smoothed down the columns
    rows = grey[:, :, :-2] + 2 * grey[:, :, 1:-1] + grey[:, :, 2:]
    return (cols[:, :, 2:] - cols[:, :, :-2]) / 4, (rows[:, 2:] - rows[:, :-2]) / 4


def _gradients(grey: torch.Tensor) -> torch.Tensor:
    """Sobel magnitude statistics ``[B, 6]`` and orientation histogram ``[B, ORIENTATIONS]`` of
    ``[B, H, W]``."""
    gx, gy = _sobel(grey)
    flat = torch.hypot(gx, gy).flatten(1)
    _, median, q90 = _quantiles(flat[:, ::4])
    stats = [
        flat.mean(1), flat.std(1, correction=0), median, q90,
        (flat > 0.05).float().mean(1), (flat > 0.2).float().mean(1),
    ]  # fmt: skip
    angle = (torch.atan2(gy, gx) % math.pi / math.pi).flatten(1)
    return torch.cat([torch.stack(stats, 1), _histogram(angle, ORIENTATIONS, flat)], dim=1)


def _lbp(grey: torch.Tensor) -> torch.Tensor:
    """Rotation-invariant uniform local binary patterns of ``[B, H, W]``: whether each pixel's 8
    neighbours are brighter; codes 0–8 count the brighter ones when they form one arc, code 9 is
    any other pattern → normalised histogram ``[B, 10]``."""
    centre = grey[:, 1:-1, 1:-1] + LBP_TOLERANCE
    height, width = centre.shape[-2:]
    ring = ((0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0))
    bits = [grey[:, dy : dy + height, dx : dx + width] > centre for dy, dx in ring]
    brighter = torch.zeros_like(centre, dtype=torch.uint8)
    changes = torch.zeros_like(brighter)
    for previous, bit in zip(bits[-1:] + bits[:-1], bits, strict=True):
        brighter += bit
        changes += previous ^ bit
    code = torch.where(changes <= 2, brighter, 9).long()
    return _counts(code.flatten(1), 10)


def _blobs(haem: torch.Tensor, scale: int) -> torch.Tensor:
    """Nucleus-like peaks of the half-size haematoxylin map ``[B, 1, H, W]`` per 1000 px of the
    full tile ``[B]``, on the map averaged over ``scale``×``scale`` cells: maxima of their 3×3
    cells, stained, and above their 5×5 cells' mean by BLOB_CONTRAST."""
    cells = F.avg_pool2d(haem, scale) if scale > 1 else haem
    peaks = (
        (cells >= F.max_pool2d(cells, 3, stride=1, padding=1))
        & (cells > F.avg_pool2d(cells, 5, 1, 2, count_include_pad=False) + BLOB_CONTRAST)
        & (cells > HAEM_POSITIVE)
    )
    return peaks.flatten(1).float().sum(1) * (1000 / (4 * haem[0, 0].numel()))


def _density(grey: torch.Tensor, haem: torch.Tensor) -> torch.Tensor:
    """Shares of white, dark and haematoxylin-stained pixels and nucleus densities ``[B, 5]`` from
    luma ``[B, H, W]`` and haematoxylin ``[B, 1, H, W]``."""
    shares = [(grey > 0.85), (grey < 0.35), (haem > HAEM_POSITIVE)]
    shares = [share.flatten(1).float().mean(1) for share in shares]
    return torch.stack(shares + [_blobs(haem, scale) for scale in BLOB_SCALES], 1)


def _laplacian(grey: torch.Tensor) -> torch.Tensor:
    """Mean absolute value and std of the 4-neighbour Laplacian of ``[B, H, W]`` → ``[B, 2]``."""
    centre = grey[:, 1:-1, 1:-1]
    flat = (
        grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1] + grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:] - 4 * centre
    ).flatten(1)
    return torch.stack([flat.abs().mean(1), flat.std(1, correction=0)], 1)


class ColourTexture:
    """Hand-crafted tile features: RGB tiles uint8 ``[B, H, W, 3]`` (H, W ≥ 8) → float32
    ``[B, 105]``, the groups of :data:`GROUPS` in order. Colour and stain statistics use the tile
    averaged over 2×2 blocks (4× less work, nearly the same numbers); gradients, the Laplacian and
    the first LBP histogram use it at full size. Optical density is −log10((I + 1) / 256) and
    stains come from it by colour deconvolution with the Ruifrok H&E-DAB matrix."""

    name = "colour-texture"
    dim = sum(width for _, width in GROUPS)

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        """Features float32 ``[B, dim]`` of uint8 tiles ``[B, H, W, 3]``."""
        rgb = torch.from_numpy(check_tiles(tiles)).permute(0, 3, 1, 2).float() / 255
        with torch.inference_mode():
            grey = _grey(rgb)
            half = _halve(rgb)
            half_grey = _grey(half)
            od = -torch.log10((half * 255 + 1) / 256)
            stains = torch.einsum("bchw,cs->bshw", od, UNSTAIN)
            parts = [
                _moments(half),
                _moments(stains),
                _colour(half, od),
                _histogram(half.flatten(2).flatten(0, 1), BINS).view(len(rgb), -1),
                _gradients(grey),
                _lbp(grey),
                _lbp(half_grey),
                _density(half_grey, stains[:, :1]),
                _laplacian(grey),
            ]
            return torch.cat(parts, dim=1).numpy()
