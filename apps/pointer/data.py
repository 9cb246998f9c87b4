"""Datasets, the typed padded batch and the LightningDataModule of the pointer app.

Built-in data (no downloads): generated instances (:mod:`apps.pointer.generate`), cached under
``data/pointer/``. Files: the released Ptr-Net files and plain ``x y`` files (:mod:`apps.pointer.readers`)
for test/predict, TSPLIB ``.tsp`` instances for TSP evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from apps.pointer.constraints import EOS
from apps.pointer.generate import cached_set, solve_tsp
from apps.pointer.readers import TsplibInstance, read_points_file, read_tsplib, tsplib_reference
from apps.pointer.solvers import canonical_tour
from core.train import AppDataModule, InputError

IGNORE_INDEX = -100


@dataclass  # not frozen: Lightning's batch transfer rebuilds the dataclasses it meets
class TsplibCase:
    """A TSPLIB test instance and the tour length its gap is measured against (in its own units),
    with where that length comes from (optimal tour file, published optimum, or a solver's tour)."""

    instance: TsplibInstance
    reference_length: int
    reference_source: str


# one instance: points [n, 2], its 1-based target sequence [T] (None to predict), and the TSPLIB
# case it came from (None for generated and released data)
Item = tuple[np.ndarray, np.ndarray | None, TsplibCase | None]


@dataclass
class PointBatch:
    """Padded instances. ``points`` [B, N, 2] (zeros past each instance), ``point_mask`` [B, N]
    (True = real point), ``targets`` [B, T] = sequence + EOS padded with ``IGNORE_INDEX`` (None when
    predicting); the unpadded arrays stay for the metrics and figures."""

    points: torch.Tensor
    point_mask: torch.Tensor
    targets: torch.Tensor | None
    raw_points: list[np.ndarray]
    raw_targets: list[np.ndarray] | None
    tsplib: list[TsplibCase | None]

    def __len__(self) -> int:
        return len(self.raw_points)


class PointSets(Dataset):
    """Instances as :data:`Item` tuples."""

    def __init__(
        self,
        points: list[np.ndarray],
        targets: list[np.ndarray | None],
        tsplib: list[TsplibCase | None] | None = None,
    ) -> None:
        if len(points) != len(targets):
            raise ValueError(f"{len(points)} point sets but {len(targets)} targets")
        self.points, self.targets = points, targets
        self.tsplib = tsplib if tsplib is not None else [None] * len(points)

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> Item:
        return self.points[index], self.targets[index], self.tsplib[index]


def collate(items: list[Item]) -> PointBatch:
    """Pad a list of instances into a :class:`PointBatch`."""
    raw_points = [np.asarray(p, dtype=np.float32) for p, _, _ in items]
    sizes = [len(p) for p in raw_points]
    points = torch.zeros(len(items), max(sizes), 2)
    point_mask = torch.zeros(len(items), max(sizes), dtype=torch.bool)
    for row, p in enumerate(raw_points):
        points[row, : len(p)] = torch.from_numpy(p)
        point_mask[row, : len(p)] = True
    raw_targets = [t for _, t, _ in items]
    targets = None
    if all(t is not None for t in raw_targets):
        targets = torch.full((len(items), max(len(t) for t in raw_targets) + 1), IGNORE_INDEX)
        for row, t in enumerate(raw_targets):
            targets[row, : len(t)] = torch.from_numpy(np.asarray(t, dtype=np.int64))
            targets[row, len(t)] = EOS
    return PointBatch(
        points,
        point_mask,
        targets,
        raw_points,
        raw_targets if targets is not None else None,
        [tsplib for _, _, tsplib in items],
    )


def open_cycle(sequence: np.ndarray) -> np.ndarray:
    """A tour without its closing repeat of the first city."""
    return sequence[:-1] if len(sequence) > 1 and sequence[0] == sequence[-1] else sequence


class PointerDataModule(AppDataModule):
    """Generated train/val/test sets (or files) for one problem.

    Args:
        problem: ``convex_hull``, ``delaunay`` or ``tsp`` (linked to the task's ``problem``).
        train_n, val_n, test_n: inclusive ranges of the number of points per instance.
        train_size, val_size, test_size: instances per generated set.
        test_file: evaluate on this file instead: released format, or a TSPLIB ``.tsp``.
        predict_file: points to predict on: released format or one ``x y`` a line (default: the
            generated test instances).
        tsp_time_limit_ms: OR-Tools time per instance when n > 12.
        root, batch_size (128 in the paper), eval_batch_size, num_workers, seed: as every app
            (``seed``: the train set's; val uses seed + 1, test seed + 2).
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
        test_file: str | None = None,
        predict_file: str | None = None,
        tsp_time_limit_ms: int = 200,
        root: str = "data/pointer",
        batch_size: int = 128,
        eval_batch_size: int = 500,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            root=root, batch_size=batch_size, eval_batch_size=eval_batch_size, **kwargs
        )
        self.problem = problem
        self.train_n, self.val_n, self.test_n = train_n, val_n, test_n
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.test_file, self.predict_file = test_file, predict_file
        self.tsp_time_limit_ms = tsp_time_limit_ms

    def collate(self, items: list[Item]) -> PointBatch:
        return collate(items)

    def _generated(self, n_range: tuple[int, int], split: str, seed: int) -> PointSets:
        points, targets = cached_set(
            self.root, self.problem, tuple(n_range), self.sizes[split], seed, self.tsp_time_limit_ms
        )
        return PointSets(points, targets)

    def _released(self, path: str, role: str) -> PointSets:
        instances = read_points_file(path)
        self.record_file(role, path)
        points = [p.astype(np.float32) for p, _ in instances]
        targets = [t for _, t in instances]
        if self.problem == "tsp":  # one direction and start per tour, as the generated targets
            targets = [None if t is None else canonical_tour(open_cycle(t) - 1) for t in targets]
        return PointSets(points, targets)

    def _test_set(self) -> PointSets:
        if self.test_file is None:
            return self._generated(self.test_n, "test", self.seed + 2)
        if Path(self.test_file).suffix == ".tsp":
            if self.problem != "tsp":
                raise InputError(f"{self.test_file}: a TSPLIB file needs --data.problem tsp")
            instance = read_tsplib(self.test_file)
            self.record_file("test", self.test_file)
            points = [instance.unit_points.astype(np.float32)]
            targets = solve_tsp(points, self.tsp_time_limit_ms)
            reference = tsplib_reference(
                instance,
                self.test_file,
                targets[0],
                f"OR-Tools tour ({self.tsp_time_limit_ms} ms)",
            )
            return PointSets(points, targets, [TsplibCase(instance, *reference)])
        data = self._released(self.test_file, "test")
        if any(t is None for t in data.targets):
            raise InputError(f"{self.test_file}: testing needs target sequences ('output ...')")
        return data

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.datasets["train"] = self._generated(self.train_n, "train", self.seed)
        if stage in ("fit", "validate"):
            self.datasets["val"] = self._generated(self.val_n, "val", self.seed + 1)
        if stage == "test":
            self.datasets["test"] = self._test_set()
        if stage == "predict":
            if self.predict_file is None:  # the built-in test instances, without their targets
                test = self._generated(self.test_n, "test", self.seed + 2)
                self.datasets["predict"] = PointSets(test.points, [None] * len(test))
            else:
                self.datasets["predict"] = self._released(self.predict_file, "predict")
