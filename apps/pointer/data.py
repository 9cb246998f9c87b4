"""Datasets, padding collate and the LightningDataModule of the pointer app.

Built-in data (no downloads): generated instances (:mod:`apps.pointer.generate`), cached under
``data/pointer/``. Files: the released Ptr-Net files and plain ``x y`` files (:mod:`apps.pointer.readers`)
for test/predict, TSPLIB ``.tsp`` instances for TSP evaluation (targets solved here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from apps.pointer.constraints import EOS
from apps.pointer.generate import cached_set, solve_tsp
from apps.pointer.readers import TsplibInstance, read_points_file, read_tsplib

IGNORE_INDEX = -100

Batch = dict[str, torch.Tensor | list[np.ndarray]]


class PointSets(Dataset):
    """Instances as (points [n, 2], 1-based target sequence [T] or None)."""

    def __init__(self, points: list[np.ndarray], targets: list[np.ndarray | None]) -> None:
        if len(points) != len(targets):
            raise ValueError(f"{len(points)} point sets but {len(targets)} targets")
        self.points, self.targets = points, targets

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        return self.points[index], self.targets[index]


def collate(batch: list[tuple[np.ndarray, np.ndarray | None]]) -> Batch:
    """Pad a list of instances: ``points`` [B, N, 2] (zeros), ``point_mask`` [B, N] (True = real),
    ``targets`` [B, T] = sequence + EOS, padded with ``IGNORE_INDEX`` (absent when the instances
    have no targets); the raw arrays stay under ``raw_points``/``raw_targets`` for the metrics."""
    raw_points = [np.asarray(p, dtype=np.float32) for p, _ in batch]
    sizes = [len(p) for p in raw_points]
    points = torch.zeros(len(batch), max(sizes), 2)
    point_mask = torch.zeros(len(batch), max(sizes), dtype=torch.bool)
    for row, p in enumerate(raw_points):
        points[row, : len(p)] = torch.from_numpy(p)
        point_mask[row, : len(p)] = True
    out: Batch = {"points": points, "point_mask": point_mask, "raw_points": raw_points}
    raw_targets = [t for _, t in batch]
    if all(t is not None for t in raw_targets):
        targets = torch.full((len(batch), max(len(t) for t in raw_targets) + 1), IGNORE_INDEX)
        for row, t in enumerate(raw_targets):
            targets[row, : len(t)] = torch.from_numpy(np.asarray(t, dtype=np.int64))
            targets[row, len(t)] = EOS
        out["targets"], out["raw_targets"] = targets, raw_targets
    return out


class PointerDataModule(L.LightningDataModule):
    """Generated train/val/test sets (or files) for one problem.

    Args:
        problem: ``convex_hull``, ``delaunay`` or ``tsp``.
        train_n, val_n, test_n: inclusive ranges of the number of points per instance.
        train_size, val_size, test_size: instances per generated set.
        batch_size: training batch (128 in the paper); eval_batch_size: val/test/predict.
        seed: the train set's seed (val: seed + 1, test: seed + 2).
        root: cache folder of the generated sets.
        test_file: evaluate on this file instead: released format, or a TSPLIB ``.tsp``.
        predict_file: points to predict on: released format or one ``x y`` a line.
        tsp_time_limit_ms: OR-Tools time per instance when n > 12.
    """

    def __init__(
        self,
        problem: Literal["convex_hull", "delaunay", "tsp"] = "convex_hull",
        train_n: tuple[int, int] = (5, 5),
        val_n: tuple[int, int] = (5, 5),
        test_n: tuple[int, int] = (5, 5),
        train_size: int = 200_000,
        val_size: int = 1000,
        test_size: int = 1000,
        batch_size: int = 128,
        eval_batch_size: int = 500,
        seed: int = 1234,
        root: str = "data/pointer",
        test_file: str | None = None,
        predict_file: str | None = None,
        tsp_time_limit_ms: int = 200,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.problem = problem
        self.tsplib: list[TsplibInstance] = []
        self.sets: dict[str, PointSets] = {}

    def _generated(self, n_range: tuple[int, int], count: int, seed: int) -> PointSets:
        h = self.hparams
        return PointSets(
            *cached_set(h.root, self.problem, tuple(n_range), count, seed, h.tsp_time_limit_ms)
        )

    def _test_set(self) -> PointSets:
        h = self.hparams
        if h.test_file is None:
            return self._generated(h.test_n, h.test_size, h.seed + 2)
        if Path(h.test_file).suffix == ".tsp":
            if self.problem != "tsp":
                raise ValueError(f"{h.test_file}: a TSPLIB file needs problem='tsp'")
            self.tsplib = [read_tsplib(h.test_file)]
            points = [i.unit_points.astype(np.float32) for i in self.tsplib]
            return PointSets(points, solve_tsp(points, h.tsp_time_limit_ms))
        instances = read_points_file(h.test_file)
        if any(t is None for _, t in instances):
            raise ValueError(f"{h.test_file}: testing needs target sequences ('output ...')")
        return PointSets([p.astype(np.float32) for p, _ in instances], [t for _, t in instances])

    def setup(self, stage: str) -> None:
        h = self.hparams
        if stage == "fit":
            self.sets["train"] = self._generated(h.train_n, h.train_size, h.seed)
        if stage in ("fit", "validate"):
            self.sets["val"] = self._generated(h.val_n, h.val_size, h.seed + 1)
        if stage == "test":
            self.sets["test"] = self._test_set()
        if stage == "predict":
            if h.predict_file is None:
                raise ValueError(
                    "predict needs --data.predict_file (released format or 'x y' lines)"
                )
            instances = read_points_file(h.predict_file)
            self.sets["predict"] = PointSets(
                [p.astype(np.float32) for p, _ in instances], [None] * len(instances)
            )

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        size = self.hparams.batch_size if split == "train" else self.hparams.eval_batch_size
        return DataLoader(
            self.sets[split],
            batch_size=size,
            shuffle=shuffle,
            collate_fn=collate,
            num_workers=self.hparams.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")
