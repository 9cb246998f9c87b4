"""Whole-slide images through OpenSlide: opening one with a clear error, its microns per pixel, a
thumbnail, and tiles read at a target µm per pixel rather than at a pyramid level (scanners build
different pyramids, so a level number means nothing across slides).

OpenSlide errors are sticky: once a read fails, every later call on that handle fails too, so a
caller that wants to go on after a bad tile reopens the slide with :func:`open_slide`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import openslide
from PIL import Image

from core.train.errors import InputError, input_file

log = logging.getLogger("apps.wsi")

SLIDE = "a whole-slide image OpenSlide reads (SVS, tiled TIFF, NDPI, MRXS, DICOM, …)"
LEVEL_SLACK = 1.01  # a level up to 1% finer than needed still counts as coarse enough
WHITE = (255, 255, 255, 255)
UPSAMPLE_WARNING = 1.05  # upsampling by more than this is worth a warning


def open_slide(path: str | Path) -> openslide.OpenSlide:
    """The slide at ``path``; a missing, empty, unsupported, truncated or corrupt file raises
    InputError naming it."""
    path = input_file(path, SLIDE)
    try:
        return openslide.OpenSlide(path)
    except openslide.OpenSlideUnsupportedFormatError as error:
        raise InputError(
            f"{path}: OpenSlide cannot open it ({error}): not a slide format it reads, or a "
            f"truncated or corrupt file (expected {SLIDE})"
        ) from error
    except (openslide.OpenSlideError, OSError) as error:
        raise InputError(f"{path}: corrupt or truncated slide ({error})") from error


def _positive(properties: Mapping[str, str], key: str) -> float | None:
    """The property ``key`` as a positive float, or None when absent or not a positive number."""
    try:
        value = float(properties[key])
    except (KeyError, ValueError):
        return None
    return value if value > 0 else None


def slide_mpp(
    slide: openslide.OpenSlide, path: str | Path, default_mpp: float | None = None
) -> float:
    """Microns per level-0 pixel: ``openslide.mpp-x``, else estimated from the objective power as
    10 / power (the usual convention: 20× ≈ 0.5 µm/px), else ``default_mpp``; InputError when
    none is known."""
    mpp = _positive(slide.properties, openslide.PROPERTY_NAME_MPP_X)
    if mpp is not None:
        return mpp
    power = _positive(slide.properties, openslide.PROPERTY_NAME_OBJECTIVE_POWER)
    if power is not None:
        log.info(
            "%s: no mpp in the metadata; estimated %.4g µm/px from %g× objective",
            path,
            10.0 / power,
            power,
        )
        return 10.0 / power
    if default_mpp is not None:
        log.info("%s: no mpp or objective power in the metadata; using %g µm/px", path, default_mpp)
        return default_mpp
    raise InputError(
        f"{path}: the slide's metadata gives neither microns per pixel "
        f"({openslide.PROPERTY_NAME_MPP_X}) nor an objective power; give it with --data.default_mpp"
    )


def level0_tile_size(tile_px: int, target_mpp: float, slide_mpp: float, path: str | Path) -> int:
    """Side in level-0 pixels of a ``tile_px`` tile at ``target_mpp``: round(tile_px · target /
    slide mpp). Logs (once per call, so once per slide) when the slide is coarser than the target
    and tiles must be upsampled (a warning beyond UPSAMPLE_WARNING, info below: 0.5027 µm/px for a
    0.5 target is normal); a tile under one level-0 pixel raises InputError."""
    size = round(tile_px * target_mpp / slide_mpp)
    if size < 1:
        raise InputError(
            f"{path}: a {tile_px}-px tile at {target_mpp} µm/px is under one pixel of this slide "
            f"({slide_mpp:.4g} µm/px)"
        )
    if size < tile_px:
        level = logging.WARNING if tile_px / size > UPSAMPLE_WARNING else logging.INFO
        message = (
            "%s: the slide (%.4g µm/px) lacks the requested %g µm/px; tiles are upsampled %.3g×"
        )
        log.log(level, message, path, slide_mpp, target_mpp, tile_px / size)
    return size


def _opaque(region: Image.Image) -> Image.Image:
    """RGBA region → RGB, transparent parts (outside the scanned area) composited onto white."""
    background = Image.new("RGBA", region.size, WHITE)
    return Image.alpha_composite(background, region).convert("RGB")


def read_tile(
    slide: openslide.OpenSlide, xy: tuple[int, int], tile_size: int, tile_px: int
) -> np.ndarray:
    """The ``tile_size`` level-0 square at top-left ``xy`` as RGB uint8 ``[tile_px, tile_px, 3]``:
    read from the coarsest level that is still fine enough, then resized. A failed read raises
    ``openslide.OpenSlideError`` (and leaves ``slide`` unusable: reopen it)."""
    level = slide.get_best_level_for_downsample(tile_size / tile_px * LEVEL_SLACK)
    side = max(1, round(tile_size / slide.level_downsamples[level]))
    region = _opaque(slide.read_region((int(xy[0]), int(xy[1])), level, (side, side)))
    if side != tile_px:
        region = region.resize((tile_px, tile_px), Image.Resampling.BILINEAR)
    return np.asarray(region)


def thumbnail(slide: openslide.OpenSlide, max_side: int = 1024) -> tuple[np.ndarray, float]:
    """The whole slide as RGB uint8 ``[h, w, 3]`` with its longer side ≤ ``max_side``, and its
    downsample (level-0 px per thumbnail px, the mean of the x and y ratios, which differ only by
    rounding). Raises ``openslide.OpenSlideError`` when the slide cannot be read."""
    picture = np.asarray(slide.get_thumbnail((max_side, max_side)).convert("RGB"))
    width, height = slide.dimensions
    downsample = (width / picture.shape[1] + height / picture.shape[0]) / 2
    return picture, float(downsample)


def check_tiles(tiles: np.ndarray, min_px: int = 8) -> np.ndarray:
    """``tiles`` if it is an RGB uint8 batch ``[B, H, W, 3]`` with H, W ≥ ``min_px``; else
    InputError saying what was given."""
    shape = getattr(tiles, "shape", None)
    ok = isinstance(tiles, np.ndarray) and tiles.dtype == np.uint8 and tiles.ndim == 4
    if not (ok and tiles.shape[3] == 3 and min(tiles.shape[1:3]) >= min_px):
        raise InputError(
            f"tiles must be uint8 [B, H, W, 3] with H, W ≥ {min_px}, got "
            f"{getattr(tiles, 'dtype', type(tiles).__name__)} {shape}"
        )
    return tiles
