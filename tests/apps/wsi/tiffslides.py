"""Small slides written in the tests: pyramidal tiled TIFFs (OpenSlide's generic-tiff) with a
resolution tag, or Aperio-like files that give only an objective power."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

TISSUE = (170, 60, 140)  # an H&E-ish purple
APERIO = "Aperio Image Library v12.0.0\r\n{w}x{h} [0,0 {w}x{h}] (256x256) RGB|AppMag = {power}"


def canvas(height: int, width: int, box: tuple[int, int, int, int], colour=TISSUE) -> np.ndarray:
    """White uint8 ``[height, width, 3]`` with ``colour`` on ``box`` = (x0, y0, x1, y1)."""
    image = np.full((height, width, 3), 255, dtype=np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = colour
    return image


def write_tiff(path: Path, image: np.ndarray, mpp: float = 0.5, levels=(2, 4)) -> Path:
    """``image`` as a pyramidal tiled TIFF at ``mpp`` µm/px, with reduced levels subsampled by
    each of ``levels``."""
    options = {"tile": (256, 256), "photometric": "rgb", "compression": "zlib"}
    with tifffile.TiffWriter(path) as tiff:
        for factor in (1, *levels):
            pixels_per_cm = 1e4 / (mpp * factor)
            tiff.write(
                image[::factor, ::factor],
                resolution=(pixels_per_cm, pixels_per_cm),
                resolutionunit="CENTIMETER",
                subfiletype=0 if factor == 1 else 1,
                **options,
            )
    return path


def write_aperio(path: Path, image: np.ndarray, power: int = 20) -> Path:
    """``image`` as a one-level Aperio-like SVS whose metadata gives an objective power, no mpp."""
    height, width = image.shape[:2]
    description = APERIO.format(w=width, h=height, power=power)
    tifffile.imwrite(path, image, tile=(256, 256), photometric="rgb", compression="zlib",
                     description=description, metadata=None)  # fmt: skip
    return path
