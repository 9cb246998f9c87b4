"""WSI feature extraction on the CPU (2 threads): tiles/s of the built-in extractor alone and of the
whole preprocessing of a slide (tissue, tiling, tile reads, features, feature file).

Tiles: 224 × 224 uint8 RGB cut from an H&E-like synthetic slide (``apps.wsi.synthetic``), only
where its tissue mask covers at least half of the tile, so the pictures are tissue (stroma, nuclei),
not glass; batches of 64 (the preprocessing default). The built-in extractor is
``build_extractor("builtin")`` (colour, stain and texture statistics in torch, D = 105).

End to end: one synthetic slide of 6144 × 4096 px at 0.5 µm/px, written as a JPEG-tiled pyramidal
TIFF (as scanners write them) to a temporary folder, through ``preprocess_slides`` with the default
tiling (224 px at 0.5 µm/px, ≥ 50 % tissue, batches of 64); each timed call first removes the
previous call's feature file, which would otherwise be reused. The slide's tiles/s against the
extractor's alone shows what reading and tiling cost.

Peak memory of one batch of the extractor is measured in a fresh process
(:func:`benchmarks._harness.peak_mib`). There is no peer: these are our figures alone::

    python -m benchmarks.wsi_extract --rounds 5

ends with one machine-readable line ``ours builtin_tiles_per_s=<x> slide_tiles_per_s=<x>``.
``--rounds`` is the number of timed batches; the slide takes ``max(2, rounds // 2)`` (each also
runs once untimed first). The default run takes under a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from apps.wsi.extractors import build_extractor
from apps.wsi.histology import synthetic_slide
from apps.wsi.preprocess import feature_file, preprocess_slides
from apps.wsi.pyramid import write_pyramidal_tiff
from apps.wsi.tissue import tile_grid, tissue_mask
from benchmarks._harness import (
    THREADS,
    alternating_median_s,
    markdown_table,
    peak_mib,
    serve_peak_request,
    watch_load,
)

TILE_PX, BATCH, MPP = 224, 64, 0.5
TILE_SLIDE = (3072, 4096)  # (height, width) of the picture the batch's tiles are cut from
SLIDE = (4096, 6144)  # the end-to-end slide
MASK_STEP = 8  # level-0 px per pixel of the tissue mask the tiles are chosen on


@functools.cache
def picture(height: int, width: int) -> np.ndarray:
    """A synthetic tumour slide's uint8 ``[height, width, 3]`` picture (seeded)."""
    return synthetic_slide(np.random.default_rng(0), height, width, tumour=True)[0]


def tissue_tiles(count: int = BATCH) -> np.ndarray:
    """``count`` tiles uint8 ``[count, 224, 224, 3]`` of the tissue of a synthetic slide (cycled
    if it has fewer), as the preprocessing grid would choose them."""
    image = picture(*TILE_SLIDE)
    mask = tissue_mask(image[::MASK_STEP, ::MASK_STEP])
    corners = tile_grid(image.shape[1::-1], mask, MASK_STEP, TILE_PX)
    tiles = [image[y : y + TILE_PX, x : x + TILE_PX] for x, y in corners]
    return np.stack([tiles[i % len(tiles)] for i in range(count)])


def extractor_batch() -> Callable[[], None]:
    """One batch of :func:`tissue_tiles` through the built-in extractor."""
    extractor, tiles = build_extractor("builtin"), tissue_tiles()

    def run() -> None:
        features = extractor(tiles)
        assert features.shape == (BATCH, extractor.dim)

    return run


@contextlib.contextmanager
def synthetic_tiff() -> Iterator[Path]:
    """The end-to-end slide written to a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="wsi-extract-") as folder:
        path = Path(folder) / "slide.tiff"
        write_pyramidal_tiff(path, picture(*SLIDE), MPP)
        yield path


def slide_preprocessing(slide: Path, tiles: list[int]) -> Callable[[], None]:
    """``preprocess_slides`` of ``slide`` into a folder beside it (its feature file removed first;
    progress bars swallowed); appends the tiles written to ``tiles``."""
    extractor, out_dir = build_extractor("builtin"), slide.parent / "features"

    def run() -> None:
        feature_file(out_dir, slide).unlink(missing_ok=True)
        with contextlib.redirect_stderr(io.StringIO()):
            report = preprocess_slides([slide], out_dir, extractor, target_mpp=MPP)
        if report.failed or not report.tiles:
            raise RuntimeError(f"preprocessing failed: {report.summary()}")
        tiles.append(report.tiles)

    return run


def build(case: str) -> Callable[[], None]:
    """``builtin/64``: one batch of the extractor (the only case with a peak-memory row)."""
    if case != f"builtin/{BATCH}":
        raise SystemExit(f"unknown case {case!r}")
    return extractor_batch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed batches")
    parser.add_argument("--peak", help=argparse.SUPPRESS)  # one case, in a fresh process
    args = parser.parse_args()
    if serve_peak_request(build):
        return
    slide_rounds = max(2, args.rounds // 2)
    tiles: list[int] = []
    with synthetic_tiff() as slide, watch_load() as load:
        batch_s = alternating_median_s({"builtin": extractor_batch()}, args.rounds)["builtin"]
        slide_s = alternating_median_s({"slide": slide_preprocessing(slide, tiles)}, slide_rounds)
        slide_s = slide_s["slide"]
        peak = peak_mib(__file__, f"builtin/{BATCH}")
    builtin, end_to_end = BATCH / batch_s, tiles[-1] / slide_s
    height, width = SLIDE
    rows = [
        [f"built-in extractor, batches of {BATCH} tissue tiles", builtin, batch_s / BATCH * 1e3],
        [
            f"whole slide {width} × {height} px ({tiles[-1]} tiles): tissue, reads, features, file",
            end_to_end,
            slide_s / tiles[-1] * 1e3,
        ],
    ]
    print(
        f"\n### WSI feature extraction, CPU ({THREADS} threads): {TILE_PX}-px tiles at {MPP} µm/px; "
        f"median of {args.rounds} batches, {slide_rounds} slide runs\n"
    )
    print(markdown_table(["what", "tiles/s", "ms/tile"], rows))
    print(f"\npeak memory of one batch of {BATCH} through the extractor: {peak:,.0f} MiB")
    print(f"reading and tiling take {1 - end_to_end / builtin:.0%} of the slide's time")
    print("\n" + load[0].report())
    print(f"ours builtin_tiles_per_s={builtin:.1f} slide_tiles_per_s={end_to_end:.1f}")


if __name__ == "__main__":
    main()
