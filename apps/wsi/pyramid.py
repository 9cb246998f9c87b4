"""Tiled pyramidal TIFFs that OpenSlide opens as ``generic-tiff``: level 0 then 2× reductions, each
level its own IFD (reduced ones marked ``subfiletype=1``), the µm per pixel in the resolution tags."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import tifffile

from core.train import InputError

log = logging.getLogger("apps.wsi")

# the TIFF compressions OpenSlide 4 decodes (it refuses webp, lzma, jpeg2000 and jpegxl tiles)
COMPRESSIONS = ("jpeg", "zlib", "adobe_deflate", "lzw", "zstd", "none")
UM_PER_CM = 1e4


def write_pyramidal_tiff(
    path: str | Path,
    image: np.ndarray,
    mpp: float,
    tile: int = 256,
    min_size: int = 512,
    compression: str = "jpeg",
    quality: int = 90,
) -> None:
    """Write uint8 ``image`` [H, W, 3] as a tiled pyramidal TIFF OpenSlide opens as generic-tiff.

    Level 0 is the image; each further level halves the previous one (2×2 area average, an odd
    last row or column dropped) until the longer side is below ``min_size``. Every level is its own
    IFD (reduced ones with subfiletype 1) with resolution tags in pixels per centimetre, so
    OpenSlide reports ``openslide.mpp-x``/``mpp-y`` = ``mpp`` (µm per level-0 pixel). JPEG tiles are
    YCbCr with 2×2 chroma subsampling, as scanners write them; OpenSlide decodes them.
    """
    path = Path(path)
    _check_tiff_arguments(path, image, mpp, tile, min_size, compression, quality)
    height, width = image.shape[:2]
    codec = None if compression == "none" else compression
    options = {"level": quality} if compression == "jpeg" else None
    with tifffile.TiffWriter(path, bigtiff=image.nbytes >= 2**31) as tiff:
        for level, picture in enumerate(_pyramid(image, min_size)):
            per_cm = UM_PER_CM / mpp  # level-0 pixels per cm, scaled to this level's size
            resolution = (per_cm * picture.shape[1] / width, per_cm * picture.shape[0] / height)
            tiff.write(
                picture,
                photometric="rgb",
                tile=(tile, tile),
                compression=codec,
                compressionargs=options,
                resolution=resolution,
                resolutionunit="CENTIMETER",
                subfiletype=0 if level == 0 else 1,
                metadata=None,  # no tifffile JSON ImageDescription
            )


def _check_tiff_arguments(
    path: Path,
    image: np.ndarray,
    mpp: float,
    tile: int,
    min_size: int,
    compression: str,
    quality: int,
) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(
            f"{path}: expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}"
        )
    if not (math.isfinite(mpp) and mpp > 0):
        raise InputError(f"{path}: expected a positive mpp (µm per pixel), got {mpp}")
    if tile <= 0 or tile % 16:
        raise InputError(
            f"{path}: expected a tile size that is a positive multiple of 16, got {tile}"
        )
    if min_size < 1:
        raise InputError(f"{path}: expected a min_size of at least 1, got {min_size}")
    if compression not in COMPRESSIONS:
        raise InputError(f"{path}: expected a compression in {COMPRESSIONS}, got {compression!r}")
    if not 1 <= quality <= 100:
        raise InputError(f"{path}: expected a JPEG quality in 1..100, got {quality}")


def _pyramid(image: np.ndarray, min_size: int) -> list[np.ndarray]:
    """[H, W, 3] level 0, then 2× reductions until the longer side is below ``min_size``."""
    levels = [image]
    while max(levels[-1].shape[:2]) >= min_size and min(levels[-1].shape[:2]) >= 2:
        levels.append(_halve(levels[-1]))
    return levels


def _halve(image: np.ndarray) -> np.ndarray:
    """[H, W, C] uint8 → [H // 2, W // 2, C]: the rounded mean of each 2×2 block."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    total = image[:h:2, :w:2].astype(np.uint16) + image[1:h:2, :w:2]
    total += image[:h:2, 1:w:2]
    total += image[1:h:2, 1:w:2]
    return ((total + 2) // 4).astype(np.uint8)
