"""Slides → feature files: each slide is opened, its tissue found on a thumbnail, tiled at a target
µm per pixel, and its tiles turned into features, written to ``<out_dir>/h5_files/<stem>.h5`` in
CLAM's layout:

* ``features`` float32 ``[N, D]``, ``coords`` int64 ``[N, 2]`` (level-0 top-left x, y);
* file attrs ``tile_size`` (level-0 px), ``tile_px``, ``target_mpp``, ``min_tissue``,
  ``slide_mpp``, ``extractor``, ``slide_path``, ``slide_hash`` (OpenSlide's ``quickhash-1`` of the
  slide), ``skipped_tiles``;
* ``thumbnail`` uint8 ``[h, w, 3]`` with attr ``downsample`` (level-0 px per thumbnail px).

Files are written atomically (a scratch file, then renamed), so an existing file is complete and a
rerun reuses it, unless its slide has changed since (another hash: it is made again). A slide that
cannot be used is reported with its reason and the others go on.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import openslide
from tqdm.auto import tqdm

from apps.wsi.extractors import FeatureExtractor
from apps.wsi.slides import level0_tile_size, open_slide, read_tile, slide_mpp, thumbnail
from apps.wsi.tissue import SATURATION_FLOOR, tile_grid, tissue_mask
from core.train.errors import InputError
from core.train.files import write_atomically

log = logging.getLogger("apps.wsi")

THUMBNAIL_SIDE = 1024
FEATURE_DIR = "h5_files"
ATTRS = (
    "tile_size", "tile_px", "target_mpp", "min_tissue", "slide_mpp", "extractor", "slide_path",
    "slide_hash", "skipped_tiles",
)  # fmt: skip
HASH = "openslide.quickhash-1"  # OpenSlide's content hash of a slide (its smallest level, metadata)


@dataclass(frozen=True)
class Tiling:
    """How slides are tiled: ``tile_px`` tiles at ``target_mpp`` µm/px with ≥ ``min_tissue``
    tissue, ``batch_size`` tiles a forward pass; ``default_mpp`` for slides that do not say."""

    target_mpp: float = 0.5
    tile_px: int = 224
    min_tissue: float = 0.5
    batch_size: int = 64
    default_mpp: float | None = None

    def __post_init__(self) -> None:
        checks = {
            "target_mpp must be > 0": self.target_mpp > 0,
            "tile_px must be ≥ 8": self.tile_px >= 8,
            "min_tissue must be in (0, 1]": 0 < self.min_tissue <= 1,
            "batch_size must be ≥ 1": self.batch_size >= 1,
            "default_mpp must be > 0": self.default_mpp is None or self.default_mpp > 0,
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise InputError(f"bad tiling settings {self}: {'; '.join(failed)}")


@dataclass
class SlideFeatures:
    """One slide's result: features float32 ``[N, D]``, coords int64 ``[N, 2]``, thumbnail uint8
    ``[h, w, 3]`` with its downsample, and the file attrs (:data:`ATTRS`)."""

    features: np.ndarray
    coords: np.ndarray
    thumbnail: np.ndarray
    downsample: float
    attrs: dict[str, int | float | str]


@dataclass
class PreprocessReport:
    """What :func:`preprocess_slides` did: feature files written and reused, failed slides (path →
    reason), tiles written and unreadable tiles skipped, wall time."""

    written: list[Path] = field(default_factory=list)
    reused: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped_tiles: int = 0
    tiles: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        """One line of counts and speed, then a line per failed slide."""
        rate = self.tiles / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"{len(self.written)} slides written, {len(self.reused)} reused, {len(self.failed)} "
            f"failed; {self.tiles} tiles ({self.skipped_tiles} unreadable, skipped) in "
            f"{self.seconds:.1f} s ({rate:.1f} tiles/s)"
        ]
        return "\n".join(lines + [f"  failed: {reason}" for reason in self.failed.values()])


def feature_file(out_dir: str | Path, slide: str | Path) -> Path:
    """Where the features of ``slide`` go: ``<out_dir>/h5_files/<slide stem>.h5``."""
    return Path(out_dir) / FEATURE_DIR / f"{Path(slide).stem}.h5"


class TileReader:
    """A slide's tiles, read one at a time and going on after a failed read: OpenSlide errors are
    sticky, so the slide is reopened after one. Counts the failures."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.slide = open_slide(path)
        self.skipped = 0
        self.first_error = ""

    def read(self, xy: np.ndarray, tile_size: int, tile_px: int) -> np.ndarray | None:
        """Tile uint8 ``[tile_px, tile_px, 3]`` at level-0 ``xy``, or None when it cannot be read."""
        try:
            return read_tile(self.slide, (int(xy[0]), int(xy[1])), tile_size, tile_px)
        except openslide.OpenSlideError as error:
            log.debug("%s: tile at %s unreadable: %s", self.path, tuple(xy), error)
            self.skipped += 1
            self.first_error = self.first_error or f"tile at {tuple(int(v) for v in xy)}: {error}"
            self.slide.close()
            self.slide = open_slide(self.path)
            return None

    def close(self) -> None:
        self.slide.close()


def _grid(
    reader: TileReader, tile_size: int, picture: np.ndarray, downsample: float, tiling: Tiling
) -> np.ndarray:
    """Tile corners int64 ``[N, 2]`` on the tissue of the thumbnail; InputError when there are
    none."""
    width, height = reader.slide.dimensions
    if min(width, height) < tile_size:
        raise InputError(
            f"{reader.path}: the slide ({width}×{height} px) is smaller than one "
            f"{tile_size}-px tile ({tiling.tile_px} px at {tiling.target_mpp} µm/px)"
        )
    coords = tile_grid(
        (width, height), tissue_mask(picture), downsample, tile_size, tiling.min_tissue
    )
    if not len(coords):
        raise InputError(
            f"{reader.path}: no tissue found (no {tile_size}-px tile is ≥ {tiling.min_tissue:.0%} "
            f"tissue; tissue = saturation above its Otsu threshold and {SATURATION_FLOOR}, not "
            f"near-white or near-black, on a {picture.shape[1]}×{picture.shape[0]} thumbnail)"
        )
    return coords


def _extract(
    reader: TileReader,
    coords: np.ndarray,
    tile_size: int,
    extractor: FeatureExtractor,
    tiling: Tiling,
) -> tuple[np.ndarray, np.ndarray]:
    """Features float32 ``[M, D]`` of the readable tiles among ``coords`` ``[N, 2]`` and their
    coords ``[M, 2]``, in batches of ``tiling.batch_size``."""
    features, kept = [], []
    bar = tqdm(total=len(coords), desc=reader.path.name, unit="tile", leave=False)
    for start in range(0, len(coords), tiling.batch_size):
        batch = coords[start : start + tiling.batch_size]
        tiles = [reader.read(xy, tile_size, tiling.tile_px) for xy in batch]
        good = [i for i, tile in enumerate(tiles) if tile is not None]
        if good:
            features.append(np.asarray(extractor(np.stack([tiles[i] for i in good])), np.float32))
            kept.extend(start + i for i in good)
        bar.update(len(batch))
    bar.close()
    if not kept:
        raise InputError(
            f"{reader.path}: none of its {len(coords)} tiles could be read ({reader.first_error})"
        )
    return np.concatenate(features), coords[kept]


def slide_features(path: Path, extractor: FeatureExtractor, tiling: Tiling) -> SlideFeatures:
    """Tile one slide and extract its features; InputError (or OpenSlideError) when it cannot."""
    reader = TileReader(path)
    try:
        mpp, fingerprint = (
            slide_mpp(reader.slide, path, tiling.default_mpp),
            slide_hash(reader.slide),
        )
        tile_size = level0_tile_size(tiling.tile_px, tiling.target_mpp, mpp, path)
        picture, downsample = thumbnail(reader.slide, THUMBNAIL_SIDE)
        coords = _grid(reader, tile_size, picture, downsample, tiling)
        features, coords = _extract(reader, coords, tile_size, extractor, tiling)
    finally:
        reader.close()
    if reader.skipped:
        log.warning(
            "%s: skipped %d unreadable tiles of %d (first: %s)",
            path,
            reader.skipped,
            len(coords) + reader.skipped,
            reader.first_error,
        )
    attrs = {"tile_size": tile_size, "tile_px": tiling.tile_px, "target_mpp": tiling.target_mpp,
             "min_tissue": tiling.min_tissue, "slide_mpp": mpp, "extractor": extractor.name,
             "slide_path": str(path.resolve()), "slide_hash": fingerprint,
             "skipped_tiles": reader.skipped}  # fmt: skip
    return SlideFeatures(features, coords, picture, downsample, attrs)


def write_feature_file(path: Path, made: SlideFeatures) -> None:
    """Write ``made`` to ``path`` atomically (a scratch file, then renamed)."""

    def write(scratch: Path) -> None:
        with h5py.File(scratch, "w") as file:
            file.create_dataset("features", data=made.features.astype(np.float32, copy=False))
            file.create_dataset("coords", data=made.coords.astype(np.int64, copy=False))
            file.create_dataset("thumbnail", data=made.thumbnail.astype(np.uint8, copy=False))
            file["thumbnail"].attrs["downsample"] = float(made.downsample)
            file.attrs.update(made.attrs)

    write_atomically(path, write)


def _is_complete(file: h5py.File) -> bool:
    """Whether an open feature file has every dataset and attr, with matching lengths."""
    if not all(name in file for name in ("features", "coords", "thumbnail")):
        return False
    features, coords = file["features"], file["coords"]
    return (
        features.ndim == 2
        and coords.shape == (features.shape[0], 2)
        and "downsample" in file["thumbnail"].attrs
        and all(key in file.attrs for key in ATTRS)
    )


def slide_hash(slide: openslide.OpenSlide) -> str:
    """OpenSlide's content hash of ``slide`` ('' for a format without one)."""
    return str(slide.properties.get(HASH, ""))


def reusable(path: Path, slide: Path, extractor: FeatureExtractor, tiling: Tiling) -> bool:
    """Whether the feature file at ``path`` exists, is complete, was made with these settings and
    from ``slide`` as it is now (the same hash); InputError when it was made with other settings
    (it is not overwritten)."""
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as file:
            if not _is_complete(file):
                log.warning("%s: incomplete feature file; making it again", path)
                return False
            made = (file.attrs["extractor"], file.attrs["tile_px"], file.attrs["target_mpp"])
            made += (file.attrs["min_tissue"], file["features"].shape[1])
            made_hash = str(file.attrs["slide_hash"])
    except OSError as error:
        log.warning("%s: unreadable feature file (%s); making it again", path, error)
        return False
    wanted = (extractor.name, tiling.tile_px, tiling.target_mpp, tiling.min_tissue, extractor.dim)
    if made != wanted:
        said = "extractor {}, tile_px {}, target_mpp {}, min_tissue {}, D = {}"
        raise InputError(
            f"{path}: made with {said.format(*made)}, not {said.format(*wanted)}; "
            "remove it or choose another out_dir"
        )
    current = open_slide(slide)
    try:
        changed = made_hash != slide_hash(current)
    finally:
        current.close()
    if changed:
        log.info("%s: the slide changed since its features were made; making them again", slide)
    return not changed


def _check_stems(slides: list[Path]) -> None:
    """InputError when two slides would share a feature file (same file stem)."""
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for slide in slides:
        by_stem[Path(slide).stem].append(Path(slide))
    for stem, paths in by_stem.items():
        if len(paths) > 1:
            raise InputError(
                f"{paths[0]} and {paths[1]} would share the feature file {stem}.h5; rename one"
            )


def preprocess_slides(
    slides: list[Path],
    out_dir: Path,
    extractor: FeatureExtractor,
    target_mpp: float = 0.5,
    tile_px: int = 224,
    min_tissue: float = 0.5,
    batch_size: int = 64,
    default_mpp: float | None = None,
) -> PreprocessReport:
    """Write the feature file of every slide that has none yet (:func:`feature_file`); a slide
    that fails (unreadable, no tissue, no readable tile, a file made with other settings) is
    logged and recorded in the report, and the others go on."""
    tiling = Tiling(target_mpp, tile_px, min_tissue, batch_size, default_mpp)
    _check_stems(slides)
    (Path(out_dir) / FEATURE_DIR).mkdir(parents=True, exist_ok=True)
    report, start = PreprocessReport(), time.perf_counter()
    for slide in tqdm(slides, desc="slides", unit="slide"):
        slide, target = Path(slide), feature_file(out_dir, slide)
        try:
            if reusable(target, slide, extractor, tiling):
                report.reused.append(target)
                continue
            made = slide_features(slide, extractor, tiling)
        except (InputError, openslide.OpenSlideError) as error:
            reason = str(error) if isinstance(error, InputError) else f"{slide}: {error}"
            log.warning("slide left out: %s", reason)
            report.failed[str(slide)] = reason
            continue
        write_feature_file(target, made)
        report.written.append(target)
        report.tiles += len(made.coords)
        report.skipped_tiles += int(made.attrs["skipped_tiles"])
    report.seconds = time.perf_counter() - start
    log.info("preprocessing: %s", report.summary())
    return report
