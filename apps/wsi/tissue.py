"""Where the tissue is: a mask from a slide thumbnail (stained tissue is coloured, glass is white or
grey) and the grid of level-0 tiles that mostly lie on it."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SATURATION_FLOOR = 0.05  # a pixel less saturated than this is never tissue, whatever Otsu says
NEAR_WHITE = 0.92  # all three channels above this fraction of 255: glass, not tissue
NEAR_BLACK = 0.12  # all three channels below it: pen, dust or scanner border
CLEANUP = np.ones((3, 3), dtype=bool)


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation of uint8 ``[h, w, 3]`` as uint8 ``[h, w]`` (0..255): (max − min) / max."""
    top = rgb.max(axis=-1).astype(np.float32)
    bottom = rgb.min(axis=-1).astype(np.float32)
    ratio = np.divide(top - bottom, top, out=np.zeros_like(top), where=top > 0)
    return np.round(ratio * 255).astype(np.uint8)


def otsu_threshold(values: np.ndarray) -> int:
    """Otsu's threshold of uint8 values: the t maximising the between-class variance of
    {v ≤ t} and {v > t}; 0 when all values are equal."""
    counts = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    share = counts / counts.sum()
    below = np.cumsum(share)  # weight of the lower class for each t
    mean_below = np.cumsum(share * np.arange(256))
    total_mean = mean_below[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mean * below - mean_below) ** 2 / (below * (1 - below))
    return int(np.argmax(np.nan_to_num(between, nan=0.0, posinf=0.0)))


def _clean(mask: np.ndarray) -> np.ndarray:
    """Close one-pixel gaps, then drop one-pixel specks; the edge is padded so that tissue touching
    the border keeps its border row."""
    padded = np.pad(mask, 1, mode="edge")
    padded = ndimage.binary_closing(padded, structure=CLEANUP)
    padded = ndimage.binary_opening(padded, structure=CLEANUP)
    return padded[1:-1, 1:-1]


def tissue_mask(
    thumbnail: np.ndarray,
    floor: float = SATURATION_FLOOR,
    near_white: float = NEAR_WHITE,
    near_black: float = NEAR_BLACK,
) -> np.ndarray:
    """Tissue pixels of an RGB uint8 thumbnail ``[h, w, 3]`` as bool ``[h, w]``: saturation above
    both its Otsu threshold and ``floor`` · 255, and neither near-white nor near-black (fractions
    of 255), then a 3×3 closing and opening. A blank thumbnail gives an all-False mask."""
    sat = saturation(thumbnail)
    threshold = max(otsu_threshold(sat), floor * 255)
    mask = sat > threshold
    mask &= ~(thumbnail.min(axis=-1) > near_white * 255)
    mask &= ~(thumbnail.max(axis=-1) < near_black * 255)
    return _clean(mask)


def _cells(
    starts: np.ndarray, tile_size: int, downsample: float, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mask index ranges [first, stop) covering level-0 intervals [start, start + tile_size),
    at least one mask pixel each and clipped to the mask."""
    first = np.clip(np.floor(starts / downsample).astype(np.int64), 0, length - 1)
    stop = np.ceil((starts + tile_size) / downsample).astype(np.int64)
    return first, np.clip(np.maximum(stop, first + 1), 1, length)


def tissue_fractions(
    slide_size: tuple[int, int], mask: np.ndarray, mask_downsample: float, tile_size: int
) -> np.ndarray:
    """Share of tissue in each whole tile of the level-0 grid with step ``tile_size``, float
    ``[rows, cols]``, from the mask pixels the tile covers (a summed-area table)."""
    width, height = slide_size
    xs = np.arange(width // tile_size) * tile_size
    ys = np.arange(height // tile_size) * tile_size
    x0, x1 = _cells(xs, tile_size, mask_downsample, mask.shape[1])
    y0, y1 = _cells(ys, tile_size, mask_downsample, mask.shape[0])
    table = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (
        table[np.ix_(y1, x1)]
        - table[np.ix_(y0, x1)]
        - table[np.ix_(y1, x0)]
        + table[np.ix_(y0, x0)]
    )
    return sums / ((y1 - y0)[:, None] * (x1 - x0)[None, :])


def tile_grid(
    slide_size: tuple[int, int],
    mask: np.ndarray,
    mask_downsample: float,
    tile_size: int,
    min_tissue: float = 0.5,
) -> np.ndarray:
    """Top-left level-0 corners ``(x, y)``, int64 ``[N, 2]`` in row-major order, of the
    non-overlapping ``tile_size`` tiles inside the slide (``slide_size`` = level-0 (W, H)) whose
    tissue share in ``mask`` (level-0 px per mask px: ``mask_downsample``) is ≥ ``min_tissue``.
    N may be 0; the caller decides what that means."""
    fractions = tissue_fractions(slide_size, mask, mask_downsample, tile_size)
    rows, cols = np.nonzero(fractions >= min_tissue)
    return np.stack([cols, rows], axis=1).astype(np.int64) * tile_size
