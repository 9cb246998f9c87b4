"""The base LightningDataModule of every app: the flags every app shares (``--data.root``,
``--data.batch_size``, ``--data.eval_batch_size``, ``--data.num_workers``, ``--data.seed``), one loader
helper, and what ``results.json`` records about the data (files with their hashes, counts)."""

from __future__ import annotations

import hashlib
from collections.abc import Sized
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset, default_collate

HASH_CHUNK = 1 << 20


class AppDataModule(L.LightningDataModule):
    """What every app's datamodule shares. A subclass fills ``self.datasets[split]`` in ``setup``
    (splits ``train``, ``val``, ``test``, ``predict``), overrides :meth:`collate` when its batches need
    it, and records each real file it reads with :meth:`record_file`.

    Args:
        root: folder of the app's data (downloads and caches), ``data/<app>`` by default.
        batch_size: training batch; eval_batch_size: validation/test/predict batch.
        num_workers: DataLoader worker processes.
        seed: the seed of generated data and splits (not of training; see ``seed_everything``).
    """

    def __init__(
        self,
        root: str = "data",
        batch_size: int = 32,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        seed: int = 1234,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.seed = num_workers, seed
        self.datasets: dict[str, Dataset] = {}
        self.files: dict[str, Path] = {}

    def loader(self, split: str) -> DataLoader:
        """The DataLoader of ``split``: shuffled training batches, ordered evaluation batches."""
        if split not in self.datasets:
            raise RuntimeError(f"no {split!r} dataset: setup() did not build it")
        train = split == "train"
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def collate(self, items: list[Any]) -> Any:
        """A batch from a list of dataset items (default: PyTorch's stacking collate)."""
        return default_collate(items)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.loader("predict")

    def data_path(self, name: str) -> Path:
        """A user's file argument: as given when absolute or present (from the working folder),
        else under ``root`` (``--data.jsb_file Jsb16thSeparated.json`` finds ``data/music/…``)."""
        path = Path(name)
        return path if path.is_absolute() or path.exists() else self.root / path

    def record_file(self, role: str, path: str | Path) -> None:
        """Note a file the data came from (``role``: e.g. ``"test"``), for ``results.json``."""
        self.files[role] = Path(path)

    def describe(self) -> dict[str, Any]:
        """The data behind an evaluation: sizes of the built splits and the files read, with sha256."""
        return {
            "counts": {
                split: len(data) for split, data in self.datasets.items() if isinstance(data, Sized)
            },
            "files": {
                role: {"path": str(path), "sha256": sha256(path)}
                for role, path in self.files.items()
            },
            "seed": self.seed,
        }


def sha256(path: Path) -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
