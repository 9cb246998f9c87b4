"""Datasets, the typed batch and the LightningDataModule of the scanpath app.

Sources: the built-in visual-search simulator (:mod:`apps.scanpath.simulate`, the default), the
Amazon book-cover data (``--data.amazon_file Amazon.json``), or COCO-Search18-style fixations with
object boxes (``--data.fixations_file`` + ``--data.objects_file``). Displays are split 80/10/10 at
random (``--data.seed``) — by display, so no test display was seen in training.

Evaluation items are displays with all their viewers' scanpaths, so a prediction is scored against
every human of its display and the encoder runs once per display; training items are the same by
default (``train_by_display``), or single scanpaths. A batch keeps each display once, however many
of its scanpaths it holds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from apps.scanpath.amazon import read_amazon
from apps.scanpath.appearance import scene_crops
from apps.scanpath.cocosearch import read_coco_search
from apps.scanpath.readers import read_boxes_file
from apps.scanpath.scenes import Scanpath, Scene, SearchData
from apps.scanpath.simulate import ensure_simulated
from core.train import AppDataModule, InputError

IGNORE_INDEX = -100
log = logging.getLogger(__name__)

Item = tuple[Scene, list[Scanpath]]  # a display and the scanpaths of this item on it


@dataclass  # not frozen: Lightning's batch transfer rebuilds the dataclasses it meets
class ScanpathBatch:
    """S displays and P scanpaths on them.

    ``crops`` uint8 [S, 1 + N, 3, h, w] (the target's picture first, then the objects, zeros past a
    display's objects), ``cells`` [S, N, 2] grid (row, col), ``object_mask`` [S, N] (True = real),
    ``target_objects`` [S] (each display's target object),
    ``scene_index`` [P] (the display of each scanpath), ``inputs`` [P, T] decoder tokens (0 = BOS,
    ``j + 1`` = object j) and ``targets`` [P, T] pointer indices (0 = EOS, ``j + 1`` = object j,
    ``IGNORE_INDEX`` past the end); the displays and their scanpaths stay for metrics and figures.
    """

    crops: torch.Tensor
    cells: torch.Tensor
    object_mask: torch.Tensor
    target_objects: torch.Tensor
    scene_index: torch.Tensor
    inputs: torch.Tensor
    targets: torch.Tensor
    scenes: list[Scene]
    scanpaths: list[list[Scanpath]]

    def __len__(self) -> int:
        return len(self.scenes)


class Searches(Dataset):
    """Items over displays: one per scanpath (``per_scanpath``) or one per display with all its
    scanpaths."""

    def __init__(self, data: SearchData, names: list[str], per_scanpath: bool) -> None:
        self.scenes = {name: data.scenes[name] for name in names}
        by_scene: dict[str, list[Scanpath]] = {name: [] for name in names}
        for path in data.scanpaths:
            if path.scene in by_scene:
                by_scene[path.scene].append(path)
        if per_scanpath:
            self.items = [(name, [p]) for name in names for p in by_scene[name]]
        else:
            self.items = [(name, by_scene[name]) for name in names]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Item:
        name, paths = self.items[index]
        return self.scenes[name], paths


class Collate:
    """Items → :class:`ScanpathBatch`, with crops of ``crop_size`` (h, w) drawn once per display
    and kept (uint8: 4 KB a crop at 45 × 30, 41 KB at the paper's 150 × 93)."""

    def __init__(self, crop_size: tuple[int, int]) -> None:
        self.crop_size = tuple(crop_size)
        self.crops: dict[str, torch.Tensor] = {}

    def scene_crops(self, scene: Scene) -> torch.Tensor:
        if scene.name not in self.crops:
            crops = torch.from_numpy(scene_crops(scene, self.crop_size))  # objects, then target
            self.crops[scene.name] = torch.cat([crops[-1:], crops[:-1]])
        return self.crops[scene.name]

    def __call__(self, items: list[Item]) -> ScanpathBatch:
        order: dict[str, int] = {}
        scenes: list[Scene] = []
        scanpaths: list[list[Scanpath]] = []
        for scene, paths in items:
            if scene.name not in order:
                order[scene.name] = len(scenes)
                scenes.append(scene)
                scanpaths.append([])
            scanpaths[order[scene.name]].extend(paths)
        S, N = len(scenes), max(len(scene) for scene in scenes)
        crops = torch.zeros(S, 1 + N, 3, *self.crop_size, dtype=torch.uint8)
        cells = torch.zeros(S, N, 2, dtype=torch.long)
        object_mask = torch.zeros(S, N, dtype=torch.bool)
        for row, scene in enumerate(scenes):
            crops[row, : len(scene) + 1] = self.scene_crops(scene)
            cells[row, : len(scene)] = torch.from_numpy(scene.cells)
            object_mask[row, : len(scene)] = True
        flat = [(row, path) for row, paths in enumerate(scanpaths) for path in paths]
        T = max((len(path) for _, path in flat), default=0) + 1
        inputs = torch.zeros(len(flat), T, dtype=torch.long)
        targets = torch.full((len(flat), T), IGNORE_INDEX, dtype=torch.long)
        for i, (_, path) in enumerate(flat):
            tokens = torch.from_numpy(path.objects.astype(np.int64)) + 1
            inputs[i, 1 : len(path) + 1] = tokens
            targets[i, : len(path)] = tokens
            targets[i, len(path)] = 0  # EOS
        scene_index = torch.tensor([row for row, _ in flat], dtype=torch.long)
        target_objects = torch.tensor([scene.target for scene in scenes], dtype=torch.long)
        return ScanpathBatch(
            crops,
            cells,
            object_mask,
            target_objects,
            scene_index,
            inputs,
            targets,
            scenes,
            scanpaths,
        )


def split_scenes(
    names: list[str], seed: int, fractions: tuple[float, float]
) -> dict[str, list[str]]:
    """Displays → ``train`` / ``val`` / ``test`` at random (``fractions`` = val, test shares; at
    least one display each), reproducible for a seed and independent of file order."""
    rng = np.random.default_rng(seed)
    shuffled = [names[i] for i in rng.permutation(len(names))]
    n_val, n_test = (max(1, round(f * len(names))) for f in fractions)
    if n_val + n_test >= len(names):
        raise InputError(
            f"{len(names)} displays cannot be split into train, val ({n_val}) and test ({n_test})"
        )
    return {
        "val": shuffled[:n_val],
        "test": shuffled[n_val : n_val + n_test],
        "train": shuffled[n_val + n_test :],
    }


class ScanpathDataModule(AppDataModule):
    """Visual-search displays and scanpaths.

    Args:
        amazon_file: the Amazon book-cover ``Amazon.json`` (DFKI STI-Dataset).
        images_dir: the collages (and ``target/``) of the Amazon data, when you have them: crops are
            then cut from the pictures; without them objects get built-in descriptors.
        fixations_file, objects_file: COCO-Search18-style fixations and the displays' object boxes.
        grid: (rows, cols) of the object positional code: Amazon's 6 × 14 covers; the cells the
            simulator places objects in; the quantisation of COCO boxes.
        crop_size: (h, w) of each object's crop for the CNN (150 × 93 in the paper).
        simulated_scenes, simulated_viewers: size of the built-in data.
        split: the val and test shares of the displays.
        train_by_display: training items are displays with all their scanpaths (``batch_size``
            counts displays, and each display's CNN and encoder pass serves all its viewers) rather
            than single scanpaths (``batch_size`` counts scanpaths, as the official code).
        predict_image, predict_boxes_file: a picture of your own and its objects' boxes (JSON, see
            :func:`apps.scanpath.readers.read_boxes_file`); without them, predict on the test
            displays.
        root, batch_size (20 in the paper), eval_batch_size, num_workers, seed: as every app.
    """

    def __init__(
        self,
        amazon_file: str | None = None,
        images_dir: str | None = None,
        fixations_file: str | None = None,
        objects_file: str | None = None,
        grid: tuple[int, int] = (6, 10),
        crop_size: tuple[int, int] = (150, 93),
        simulated_scenes: int = 1000,
        simulated_viewers: int = 4,
        split: tuple[float, float] = (0.1, 0.1),
        train_by_display: bool = True,
        predict_image: str | None = None,
        predict_boxes_file: str | None = None,
        root: str = "data/scanpath",
        batch_size: int = 20,
        eval_batch_size: int = 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            root=root, batch_size=batch_size, eval_batch_size=eval_batch_size, **kwargs
        )
        if (fixations_file is None) != (objects_file is None):
            raise InputError("--data.fixations_file and --data.objects_file go together")
        if predict_boxes_file is not None and predict_image is None:
            raise InputError("--data.predict_boxes_file needs --data.predict_image (the picture)")
        self.amazon_file, self.images_dir = amazon_file, images_dir
        self.fixations_file, self.objects_file = fixations_file, objects_file
        self.grid, self.crop_size = tuple(grid), tuple(crop_size)
        self.simulated = (simulated_scenes, simulated_viewers)
        self.split, self.train_by_display = tuple(split), train_by_display
        self.predict_image, self.predict_boxes_file = predict_image, predict_boxes_file
        self.collate = Collate(self.crop_size)

    @cached_property
    def search_data(self) -> SearchData:
        """Every display and scanpath of the chosen source, read once."""
        if self.amazon_file is not None:
            path = self.data_path(self.amazon_file)
            images = self.data_path(self.images_dir) if self.images_dir else None
            data = read_amazon(path, images, self.grid)
            self.record_file("scanpaths", path)
        elif self.fixations_file is not None:
            fixations, objects = (
                self.data_path(self.fixations_file),
                self.data_path(self.objects_file),
            )
            data = read_coco_search(fixations, objects, self.grid)
            self.record_file("scanpaths", fixations)
            self.record_file("objects", objects)
        else:
            fixations, objects = ensure_simulated(self.root, *self.simulated, self.seed, self.grid)
            data = read_coco_search(fixations, objects, self.grid, filter_lengths=True)
        if data.skipped:
            log.warning(
                "%d scanpaths were skipped while reading (reasons logged above)", data.skipped
            )
        return data

    @cached_property
    def splits(self) -> dict[str, list[str]]:
        return split_scenes(sorted(self.search_data.scenes), self.seed, self.split)

    @cached_property
    def mean_length(self) -> float:
        """The training scanpaths' mean length: the baselines' stopping length."""
        train = set(self.splits["train"])
        lengths = [len(p) for p in self.search_data.scanpaths if p.scene in train]
        return float(np.mean(lengths))

    @cached_property
    def max_length(self) -> int:
        """The longest scanpath read: the decoder's step limit (links to the task)."""
        return max(len(p) for p in self.search_data.scanpaths)

    def setup(self, stage: str) -> None:
        data = self.search_data
        if stage == "fit":
            per_scanpath = not self.train_by_display
            self.datasets["train"] = Searches(data, self.splits["train"], per_scanpath)
        if stage in ("fit", "validate"):
            self.datasets["val"] = Searches(data, self.splits["val"], per_scanpath=False)
        if stage == "test":
            self.datasets["test"] = Searches(data, self.splits["test"], per_scanpath=False)
        if stage == "predict":
            self.datasets["predict"] = self._predict_set()

    def _predict_set(self) -> Searches:
        if self.predict_boxes_file is None:
            return Searches(self.search_data, self.splits["test"], per_scanpath=False)
        image, boxes = self.data_path(self.predict_image), self.data_path(self.predict_boxes_file)
        scene = read_boxes_file(boxes, image, self.grid)
        self.record_file("predict", boxes)
        return Searches(SearchData({scene.name: scene}, [], self.grid), [scene.name], False)
