"""Callbacks the CLI adds to every run: checkpoints that keep the final weights, example figures,
prediction files and ``results.json`` — all written on rank 0, from hooks the app's task supplies."""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, ModelCheckpoint

from core.train.figures import run_folder, save_figure

PACKAGES = ("torch", "lightning", "torchmetrics", "numpy", "triton")


class RunCheckpoint(ModelCheckpoint):
    """``best.ckpt`` by the task's monitor and a ``last.ckpt`` that holds the final weights whatever
    ends training: the end of the epochs, ``max_steps``, ``max_time``, or an interrupt (Ctrl-C).

    The time-limit callback's state is left out of checkpoints: a later ``test`` or a resumed run has
    its own budget (and Lightning would otherwise warn about the missing callback).
    """

    def __init__(self, dirpath: Path, monitor: str | None, mode: str) -> None:
        super().__init__(
            dirpath=str(dirpath),
            monitor=monitor,
            mode=mode,
            save_last=True,
            filename="best" if monitor else "epoch{epoch}",
            auto_insert_metric_name=False,
        )

    def _save_final(self, trainer: L.Trainer) -> None:
        if trainer.state.fn != "fit" or trainer.global_step == 0:
            return
        path = Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
        trainer.save_checkpoint(path, weights_only=False)
        self.last_model_path = str(path)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save_final(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if trainer.world_size == 1:  # other ranks may be gone: no collective save
            self._save_final(trainer)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = checkpoint.get("callbacks", {})
        for key in [k for k in states if str(k).startswith("Timer")]:
            del states[key]


class ExampleFigures(Callback):
    """After each validation and test epoch, on rank 0, save the task's ``draw_examples`` figures as
    ``figures/<stage>_<name>_step<S>.png`` (and to TensorBoard), S = the optimiser steps behind the
    evaluated weights."""

    def _draw(self, trainer: L.Trainer, task: L.LightningModule, stage: str) -> None:
        examples, task.examples = task.examples, []
        if trainer.sanity_checking or not trainer.is_global_zero or not examples:
            return
        for name, figure in task.draw_examples(stage, examples).items():
            save_figure(figure, trainer, f"{stage}_{name}_step{task.trained_steps:06d}")

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.examples = []

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._draw(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._draw(trainer, pl_module, "test")


class PredictionWriter(BasePredictionWriter):
    """Write ``predictions<suffix>`` in the invocation folder: the task's ``prediction_header`` line
    if any, then each input's ``format_prediction`` text in dataset order; gathered from every
    process, written once."""

    def __init__(self) -> None:
        super().__init__(write_interval="epoch")
        self.path: Path | None = None

    def write_on_epoch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        predictions: Any,
        batch_indices: Any,
    ) -> None:
        # indices are [dataloader][batch]; predictions drop the dataloader level when there is one
        batches = predictions if len(batch_indices) == 1 else predictions[0]
        batch_indices = batch_indices[0]
        lines: list[tuple[int, str]] = []
        for batch, indices in zip(batches, batch_indices, strict=True):
            for index, prediction in zip(indices, batch, strict=True):
                lines.append((int(index), pl_module.format_prediction(prediction)))
        if dist.is_available() and dist.is_initialized():
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, lines)
            lines = [line for part in gathered for line in part]
        if not trainer.is_global_zero:
            return
        unique = dict(sorted(lines))  # a distributed sampler may repeat inputs to even out ranks
        self.path = run_folder(trainer) / f"predictions{pl_module.prediction_suffix}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = pl_module.prediction_header()
        head = [] if header is None else [header]
        self.path.write_text("".join(f"{line}\n" for line in [*head, *unique.values()]))
        print(f"predictions written to {self.path}")


class ResultsWriter(Callback):
    """After ``test``, write ``results.json`` beside the logs: the test metrics and everything needed
    to compare them — evaluation protocol, seeds, data files (sha256) and counts, checkpoint, package
    versions, git commit."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self.path: Path | None = None

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {
            name: float(value)
            for name, value in sorted(trainer.callback_metrics.items())
            if name.startswith("test/")
        }
        datamodule = trainer.datamodule
        results = {
            "metrics": metrics,
            "protocol": pl_module.evaluation_protocol(),
            "data": datamodule.describe() if hasattr(datamodule, "describe") else {},
            "seed_everything": self.seed,
            "checkpoint": trainer.ckpt_path,
            "processes": trainer.world_size,
            "versions": package_versions(),
            "git": git_state(),
        }
        self.path = run_folder(trainer) / "results.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    versions["cuda"] = str(torch.version.cuda)
    return versions


def git_state() -> dict[str, Any]:
    """The commit of the working tree and whether it had uncommitted changes (None outside git)."""
    root = Path(__file__).resolve().parents[2]

    def run(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": run("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}
