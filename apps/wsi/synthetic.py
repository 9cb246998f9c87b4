"""Built-in synthetic whole-slide images, so the wsi app runs end to end with no download: a seeded
set of pyramidal TIFFs (:mod:`apps.wsi.pyramid`) of H&E-like pictures (:mod:`apps.wsi.histology`),
half of them with planted tumour regions, with a CLAM-style labels CSV and the regions as JSON;
generated once and cached."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from apps.wsi.histology import MIN_SIDE, Region, synthetic_slide
from apps.wsi.pyramid import write_pyramidal_tiff
from core.train import InputError
from core.train.files import write_atomically

log = logging.getLogger("apps.wsi")

SLIDE_NAME = "slide_{:03d}"
MANIFEST, LABELS, REGIONS = "synthetic.json", "labels.csv", "regions.json"
GENERATOR_VERSION = 1  # bump when the pictures change, so cached sets are made again


@dataclass(frozen=True)
class SyntheticSet:
    """A generated set on disk: pyramidal TIFF slides, a CLAM-style labels CSV
    (``case_id,slide_id,label``) and the planted tumour regions as JSON
    (``{slide_id: [[x, y, radius], ...]}``, level-0 pixels, empty for normal slides)."""

    folder: Path
    slides: list[Path]
    labels_file: Path
    regions_file: Path

    def regions(self) -> dict[str, list[Region]]:
        """The planted tumour regions of every slide, by slide_id."""
        return read_regions(self.regions_file)


def read_regions(path: str | Path) -> dict[str, list[Region]]:
    """A regions JSON ``{slide_id: [[x, y, radius], ...]}`` as Regions by slide_id."""
    path = Path(path)
    expected = "a JSON object {slide_id: [[x, y, radius], ...]}"
    try:
        table = json.loads(path.read_text())
        return {
            str(slide): [Region(float(x), float(y), float(r)) for x, y, r in circles]
            for slide, circles in table.items()
        }
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (expected {expected})") from None
    except (ValueError, TypeError, AttributeError) as error:
        raise InputError(f"{path}: expected {expected} ({error})") from None


def ensure_synthetic(
    folder: str | Path,
    n_slides: int = 60,
    height: int = 3072,
    width: int = 4096,
    mpp: float = 0.5,
    tumour_fraction: float = 0.5,
    seed: int = 0,
) -> SyntheticSet:
    """The synthetic set in ``folder``, generated unless a complete one made with the same
    arguments is already there (its ``synthetic.json`` manifest, written last, says so).

    ``round(n_slides * tumour_fraction)`` slides, in an order shuffled by ``seed``, are tumour
    slides; slide ``i`` is drawn from its own generator seeded by (seed, i), so the set is the same
    for a seed, byte for byte.
    """
    folder = Path(folder)
    recipe = _Recipe(n_slides, height, width, mpp, tumour_fraction, seed)
    recipe.check(folder)
    found = SyntheticSet(
        folder=folder,
        slides=[folder / f"{SLIDE_NAME.format(i)}.tiff" for i in range(n_slides)],
        labels_file=folder / LABELS,
        regions_file=folder / REGIONS,
    )
    if _is_complete(found, recipe):
        log.debug("using the synthetic slides in %s", folder)
    else:
        _generate(found, recipe)
    return found


@dataclass(frozen=True)
class _Recipe:
    """What a synthetic set is made from; recorded in its manifest."""

    n_slides: int
    height: int
    width: int
    mpp: float
    tumour_fraction: float
    seed: int
    version: int = GENERATOR_VERSION

    def check(self, folder: Path) -> None:
        where = f"{folder}: synthetic slides"
        if self.n_slides < 1:
            raise InputError(f"{where}: expected n_slides >= 1, got {self.n_slides}")
        if min(self.height, self.width) < MIN_SIDE:
            raise InputError(
                f"{where}: expected sides of at least {MIN_SIDE}, got {self.height}×{self.width}"
            )
        if not (math.isfinite(self.mpp) and self.mpp > 0):
            raise InputError(f"{where}: expected a positive mpp (µm per pixel), got {self.mpp}")
        if not 0 <= self.tumour_fraction <= 1:
            raise InputError(
                f"{where}: expected a tumour_fraction in [0, 1], got {self.tumour_fraction}"
            )
        if self.seed < 0:
            raise InputError(f"{where}: expected a seed >= 0, got {self.seed}")


def _is_complete(found: SyntheticSet, recipe: _Recipe) -> bool:
    """Whether ``found``'s files all exist and its manifest records ``recipe``."""
    try:
        recorded = json.loads((found.folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    files = [*found.slides, found.labels_file, found.regions_file]
    return recorded == asdict(recipe) and all(path.is_file() for path in files)


def _generate(found: SyntheticSet, recipe: _Recipe) -> None:
    """Write every slide, the labels, the regions and, last, the manifest."""
    found.folder.mkdir(parents=True, exist_ok=True)
    (found.folder / MANIFEST).unlink(missing_ok=True)  # incomplete until written again
    for stale in set(found.folder.glob("slide_*.tiff")) - set(found.slides):
        stale.unlink()
    tumour = _tumour_slides(recipe.n_slides, recipe.tumour_fraction, recipe.seed)
    regions = {}
    for i, path in enumerate(tqdm(found.slides, desc="synthetic slides", unit="slide")):
        rng = np.random.default_rng([recipe.seed, i])
        image, planted = synthetic_slide(rng, recipe.height, recipe.width, bool(tumour[i]))
        write_atomically(path, partial(write_pyramidal_tiff, image=image, mpp=recipe.mpp))
        regions[path.stem] = [[r.x, r.y, r.radius] for r in planted]
    rows = [
        f"case_{i:03d},{path.stem},{'tumour' if tumour[i] else 'normal'}\n"
        for i, path in enumerate(found.slides)
    ]
    _write_text(found.labels_file, "case_id,slide_id,label\n" + "".join(rows))
    _write_text(found.regions_file, _regions_json(regions))
    _write_text(found.folder / MANIFEST, json.dumps(asdict(recipe), indent=1) + "\n")
    log.info(
        "generated %d synthetic slides (%d tumour; %d×%d px at %g µm/px) in %s",
        recipe.n_slides,
        tumour.sum(),
        recipe.width,
        recipe.height,
        recipe.mpp,
        found.folder,
    )


def _tumour_slides(n_slides: int, tumour_fraction: float, seed: int) -> np.ndarray:
    """bool [n_slides]: exactly round(n_slides × tumour_fraction) True, shuffled by ``seed``."""
    tumour = np.arange(n_slides) < round(n_slides * tumour_fraction)
    return np.random.default_rng(seed).permutation(tumour)


def _regions_json(regions: dict[str, list[list[float]]]) -> str:
    """``{slide_id: [[x, y, radius], ...]}`` as JSON, one slide a line."""
    lines = [f" {json.dumps(slide)}: {json.dumps(circles)}" for slide, circles in regions.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _write_text(path: Path, text: str) -> None:
    write_atomically(path, lambda part: part.write_text(text))
