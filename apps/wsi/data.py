"""The wsi datamodule: slides → tiles → features (steps 1–3, cached and resumable) → bags split into
train / val / test, packed into batches of whole bags of different sizes.

Sources: ``synthetic`` (built in: generated pyramidal TIFFs with planted tumour regions), ``slides``
(a folder of slides OpenSlide opens + a CLAM labels CSV), ``clam`` (CLAM's ``h5_files``/``pt_files``
+ labels CSV) and ``acmil_h5`` (ACMIL's single HDF5).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from apps.wsi.bags import Bag
from apps.wsi.extractors import build_extractor
from apps.wsi.histology import Region
from apps.wsi.preprocess import feature_file, preprocess_slides
from apps.wsi.readers import class_names, read_acmil_h5, read_feature_file, read_labels
from apps.wsi.splits import SplitChoice, choose_split
from apps.wsi.synthetic import SyntheticSet, ensure_synthetic
from core.train import AppDataModule, InputError
from core.train.errors import input_file

logger = logging.getLogger("apps.wsi")

Source = Literal["synthetic", "slides", "clam", "acmil_h5"]
SYNTHETIC_CLASSES = ["normal", "tumour"]
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide",
                  ".bif", ".dcm", ".czi")  # fmt: skip


@dataclass
class BagBatch:
    """N bags packed: ``features [T, F]``, ``cu_seqlens`` int32 ``[N+1]`` bag offsets, ``labels [N]``
    class indices (-1: unknown), ``bags`` the N bags (ids, tile coordinates, thumbnails for the
    heatmaps), ``instance_labels`` bool ``[T]`` tile truth when every bag has it, else None."""

    features: torch.Tensor
    cu_seqlens: torch.Tensor
    labels: torch.Tensor
    bags: list[Bag]
    instance_labels: torch.Tensor | None

    def __len__(self) -> int:
        return self.labels.shape[0]


class Bags(Dataset):
    """Bags read on demand from per-slide feature files (or held, for ACMIL's single file)."""

    def __init__(self, items: list[Path | Bag], labels: list[str | None], load: Any) -> None:
        self.items, self.labels, self.load = items, labels, load

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Bag:
        item = self.items[index]
        bag = item if isinstance(item, Bag) else self.load(item, self.labels[index])
        if len(bag) == 0:
            raise InputError(f"{bag.slide_id}: empty bag (no instances)")
        return bag


def pack(bags: list[Bag], class_index: dict[str, int]) -> BagBatch:
    """Concatenate bags into one ``[T, F]`` batch with their offsets."""
    lengths = torch.tensor([len(b) for b in bags], dtype=torch.int32)
    cu_seqlens = torch.zeros(len(bags) + 1, dtype=torch.int32)
    cu_seqlens[1:] = lengths.cumsum(0)
    features = torch.from_numpy(np.concatenate([b.features for b in bags]).astype(np.float32))
    labels = torch.tensor([class_index.get(b.label, -1) if b.label else -1 for b in bags])
    truth = None
    if all(b.instance_labels is not None for b in bags):
        truth = torch.from_numpy(np.concatenate([b.instance_labels for b in bags]).astype(bool))
    return BagBatch(features, cu_seqlens, labels, bags, truth)


def tiles_in_regions(coords: np.ndarray, tile_size: int, regions: list[Region]) -> np.ndarray:
    """bool ``[N]``: whether each tile's centre lies in a planted region."""
    centres = coords.astype(np.float64) + tile_size / 2
    inside = np.zeros(len(coords), dtype=bool)
    for region in regions:
        inside |= region.contains(centres[:, 0], centres[:, 1])
    return inside


class WSIDataModule(AppDataModule):
    """Bags of tile features for slide classification.

    Args:
        source: ``synthetic`` | ``slides`` | ``clam`` | ``acmil_h5`` (see the module docstring).
        slides_dir: folder of slides (``slides``): every file OpenSlide reads, by suffix.
        labels_file: CLAM's CSV ``case_id,slide_id,label`` (``slides``, ``clam``).
        features_dir: where features are read (``clam``: holds ``h5_files/`` or ``pt_files/``) or
            written (``slides``; default ``<root>/features/<extractor settings>``).
        h5_file: ACMIL's single HDF5 (``acmil_h5``).
        split_file: an official split (json or CSV); else ``folds`` > 0 asks for seeded, stratified
            cross-validation (test = fold ``fold``); else a seeded stratified holdout of
            ``val_fraction`` / ``test_fraction``.
        synthetic_slides, synthetic_height, synthetic_width, synthetic_mpp, tumour_fraction: the
            generated slides (level-0 size in pixels, µm per pixel, share of tumour slides).
        target_mpp, tile_px, min_tissue: tiling — tiles of ``tile_px`` pixels at ``target_mpp`` µm
            per pixel (whatever the scanner's levels), kept when at least ``min_tissue`` of a tile is
            tissue.
        default_mpp: the µm per pixel of slides that do not say (else they are an error).
        extractor: ``builtin`` (colour and texture statistics, no weights) or a dotted path to a
            model builder (``torchvision.models.resnet50``); extractor_weights_file its local
            weights; extractor_strip the attribute replaced by identity (``fc``); extract_batch
            tiles per forward.
        predict_slides: a slide file or folder to predict on; None: the test split's bags.
        root, batch_size (bags per training step; 1 in the paper), eval_batch_size, num_workers,
            seed: see :class:`core.train.AppDataModule`.
    """

    def __init__(
        self,
        source: Source = "synthetic",
        slides_dir: str | None = None,
        labels_file: str | None = None,
        features_dir: str | None = None,
        h5_file: str | None = None,
        split_file: str | None = None,
        folds: int = 0,
        fold: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        synthetic_slides: int = 60,
        synthetic_height: int = 3072,
        synthetic_width: int = 4096,
        synthetic_mpp: float = 0.5,
        tumour_fraction: float = 0.5,
        target_mpp: float = 0.5,
        tile_px: int = 224,
        min_tissue: float = 0.5,
        default_mpp: float | None = None,
        extractor: str = "builtin",
        extractor_weights_file: str | None = None,
        extractor_strip: str | None = None,
        extract_batch: int = 64,
        predict_slides: str | None = None,
        root: str = "data/wsi",
        batch_size: int = 1,
        eval_batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 1234,
    ) -> None:
        super().__init__(root, batch_size, eval_batch_size, num_workers, seed)
        self.source = source
        self.slides_dir, self.labels_file, self.features_dir = slides_dir, labels_file, features_dir
        self.h5_file, self.split_file = h5_file, split_file
        self.folds, self.fold = folds, fold
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.synthetic = dict(
            n_slides=synthetic_slides, height=synthetic_height, width=synthetic_width,
            mpp=synthetic_mpp, tumour_fraction=tumour_fraction, seed=seed,
        )  # fmt: skip
        self.tiling = dict(target_mpp=target_mpp, tile_px=tile_px, min_tissue=min_tissue,
                           default_mpp=default_mpp, batch_size=extract_batch)  # fmt: skip
        self.extractor_options = dict(
            name=extractor, weights_file=extractor_weights_file, strip=extractor_strip
        )
        self.predict_slides = predict_slides
        self.split_choice: SplitChoice | None = None
        self.regions: dict[str, list[Region]] = {}
        self.labels = self._read_labels()
        self.class_names = (
            SYNTHETIC_CLASSES if source == "synthetic" else class_names(self.labels.values())
        )
        self.feature_dim = self._feature_dim()

    # what the model needs before setup (linked to the task)
    def _read_labels(self) -> dict[str, str]:
        """slide id → class name, from the labels CSV or ACMIL's file; the synthetic set's later."""
        if self.source == "acmil_h5":
            return {b.slide_id: b.label for b in self.acmil_bags}
        if self.source in ("slides", "clam"):
            if not self.labels_file:
                raise InputError(f"source {self.source!r} needs --data.labels_file (CLAM's CSV)")
            path = input_file(self.data_path(self.labels_file), "a CSV case_id,slide_id,label")
            self.record_file("labels", path)
            return read_labels(path)
        return {}

    def _feature_dim(self) -> int:
        if self.source == "acmil_h5":
            return int(self.acmil_bags[0].features.shape[1])
        if self.source == "clam":
            first = next(iter(self.clam_files.values()))
            return int(read_feature_file(first).features.shape[1])
        return int(self.extractor.dim)

    @cached_property
    def extractor(self) -> Any:
        """The feature extractor, built once."""
        options = dict(self.extractor_options)
        if options["weights_file"]:
            options["weights_file"] = str(self.data_path(options["weights_file"]))
        return build_extractor(**options)

    # steps 1–3: slides → feature files
    def prepare_data(self) -> None:
        """Generate the synthetic slides and extract the features of every slide not yet done."""
        if self.source == "synthetic":
            self._preprocess(self._synthetic().slides)
        elif self.source == "slides":
            self._preprocess(self._slide_files(self._slides_folder()))
        if self.predict_slides:
            self._preprocess(self._predict_files())

    def _synthetic(self) -> SyntheticSet:
        made = ensure_synthetic(self.root / "synthetic", **self.synthetic)
        self.record_file("labels", made.labels_file)
        self.record_file("regions", made.regions_file)
        self.labels = read_labels(made.labels_file)
        self.regions = made.regions()
        return made

    def _slides_folder(self) -> Path:
        if not self.slides_dir:
            raise InputError("source 'slides' needs --data.slides_dir (a folder of slides)")
        folder = self.data_path(self.slides_dir)
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder (expected the slides of --data.slides_dir)")
        return folder

    def _slide_files(self, folder: Path) -> list[Path]:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SLIDE_SUFFIXES)
        if not files:
            raise InputError(f"{folder}: no slide files ({', '.join(SLIDE_SUFFIXES)})")
        return files

    def _predict_files(self) -> list[Path]:
        path = self.data_path(self.predict_slides or "")
        if path.is_dir():
            return self._slide_files(path)
        return [input_file(path, "a slide OpenSlide reads, or a folder of slides")]

    def feature_folder(self) -> Path:
        """Where this tiling and extractor's feature files live."""
        if self.features_dir:
            return self.data_path(self.features_dir)
        t = self.tiling
        key = f"{self.extractor.name}_{t['target_mpp']:g}mpp_{t['tile_px']}px_{t['min_tissue']:g}"
        return self.root / "features" / key

    def _preprocess(self, slides: list[Path]) -> None:
        report = preprocess_slides(slides, self.feature_folder(), self.extractor, **self.tiling)
        if not report.written and not report.reused:
            failures = "; ".join(f"{k}: {v}" for k, v in list(report.failed.items())[:3])
            raise InputError(f"no slide could be processed ({failures})")

    # bags
    @cached_property
    def acmil_bags(self) -> list[Bag]:
        """ACMIL's file, read once (it holds every slide)."""
        if not self.h5_file:
            raise InputError("source 'acmil_h5' needs --data.h5_file (ACMIL's HDF5)")
        path = input_file(self.data_path(self.h5_file), "ACMIL's HDF5 (a group per slide)")
        self.record_file("features", path)
        return read_acmil_h5(path)

    @cached_property
    def clam_files(self) -> dict[str, Path]:
        """slide id → feature file for the labelled slides that have one (missing ones counted and
        logged once: the feature width and the splits both need this)."""
        folder = self.data_path(self.features_dir or "")
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder (expected --data.features_dir)")
        found, missing = {}, []
        for slide_id in self.labels:
            for path in (
                folder / "h5_files" / f"{slide_id}.h5",
                folder / "pt_files" / f"{slide_id}.pt",
            ):
                if path.is_file():
                    found[slide_id] = path
                    break
            else:
                missing.append(slide_id)
        if missing:
            logger.warning("%d labelled slides have no feature file in %s (e.g. %s)",
                           len(missing), folder, ", ".join(missing[:3]))  # fmt: skip
        if not found:
            raise InputError(f"{folder}: no h5_files/<slide_id>.h5 or pt_files/<slide_id>.pt")
        return found

    def _extracted_files(self) -> dict[str, Path]:
        """slide id → feature file written by preprocessing, for the labelled slides done; slides
        without a label and labelled slides without features are counted and logged."""
        folder = self.feature_folder()
        if self.source == "slides":
            stems = {p.stem for p in self._slide_files(self._slides_folder())}
            unlabelled = sorted(stems - set(self.labels))
            if unlabelled:
                logger.warning("%d slides of %s have no row in the labels CSV, left out: %s",
                               len(unlabelled), self.slides_dir, ", ".join(unlabelled[:3]))  # fmt: skip
        files = {s: feature_file(folder, Path(s)) for s in self.labels}
        missing = [s for s, p in files.items() if not p.is_file()]
        if missing:
            logger.warning("%d labelled slides have no features (no slide file, or preprocessing "
                           "failed: see above): %s", len(missing), ", ".join(missing[:3]))  # fmt: skip
        found = {s: p for s, p in files.items() if p.is_file()}
        if not found:
            raise InputError(f"{folder}: no feature files for the labelled slides")
        return found

    def _load(self, path: Path, label: str | None) -> Bag:
        bag = read_feature_file(path, slide_id=path.stem, label=label)
        regions = self.regions.get(bag.slide_id)
        if regions is not None:
            bag.instance_labels = tiles_in_regions(bag.coords, bag.tile_size, regions)
        return bag

    def setup(self, stage: str | None = None) -> None:
        if self.source == "synthetic":
            self._synthetic()  # labels and regions (the files exist after prepare_data)
        if stage == "predict" and self.predict_slides:
            folder = self.feature_folder()
            files = [feature_file(folder, s) for s in self._predict_files()]
            done = [f for f in files if f.is_file()]
            self.datasets["predict"] = Bags(done, [None] * len(done), self._load)
            return
        items: dict[str, Path | Bag]
        if self.source == "acmil_h5":
            items = {b.slide_id: b for b in self.acmil_bags}
        elif self.source == "clam":
            items = dict(self.clam_files)
        else:
            items = dict(self._extracted_files())
        ids = list(items)
        split, self.split_choice = choose_split(
            ids, [self.labels[i] for i in ids], split_file=self._split_path(),
            folds=self.folds, fold=self.fold, seed=self.seed,
            val_fraction=self.val_fraction, test_fraction=self.test_fraction,
        )  # fmt: skip
        for name, members in split.items():
            self.datasets[name] = Bags(
                [items[i] for i in members], [self.labels[i] for i in members], self._load
            )
        if stage == "predict":
            self.datasets["predict"] = self.datasets["test"]

    def _split_path(self) -> Path | None:
        if not self.split_file:
            return None
        path = input_file(self.data_path(self.split_file), "a split file (json or csv)")
        self.record_file("split", path)
        return path

    def feature_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-feature mean and standard deviation ``[F]`` over every instance of the training bags
        (a constant feature gets std 1), for the model's input standardisation."""
        bags = self.datasets["train"]
        total, square, count = 0.0, 0.0, 0
        for i in range(len(bags)):
            features = bags[i].features.astype(np.float64)
            total, square = total + features.sum(0), square + (features**2).sum(0)
            count += len(features)
        mean = total / count
        std = np.sqrt(np.maximum(square / count - mean**2, 0.0))
        std[std < 1e-6] = 1.0
        logger.info("features standardised by the mean and std of %d training instances", count)
        return torch.from_numpy(mean).float(), torch.from_numpy(std).float()

    def collate(self, items: list[Bag]) -> BagBatch:
        return pack(items, {name: i for i, name in enumerate(self.class_names)})

    def describe(self) -> dict[str, Any]:
        """What ``results.json`` records about the data: counts, files, the split's kind (official
        file, cross-validation fold, holdout) and the tiling."""
        return {
            **super().describe(),
            "source": self.source,
            "classes": self.class_names,
            "split": self.split_choice.as_dict() if self.split_choice else None,
            "tiling": {k: v for k, v in self.tiling.items() if k != "batch_size"},
            "extractor": self.extractor_options["name"] if self.source in ("synthetic", "slides")
            else "precomputed",
        }  # fmt: skip
