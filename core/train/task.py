"""The base LightningModule of every app: optimiser and scheduler from the config, the checkpoint
monitor as declared attributes, loss logging that is right under DDP, and the hooks the shared
callbacks call (figures, predictions, the evaluation protocol of ``results.json``)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, TypeVar

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from matplotlib.figure import Figure
from torchmetrics import MeanMetric, Metric

ConfigT = TypeVar("ConfigT")
STAGES = ("train", "val", "test")


def as_config(config_class: type[ConfigT], value: ConfigT | dict[str, Any]) -> ConfigT:
    """A network's config dataclass from itself or from the plain dict a checkpoint stores."""
    return config_class(**value) if isinstance(value, dict) else value


class AppTask(L.LightningModule):
    """What every app's task shares. A subclass owns its network, loss, metrics and figures.

    Args:
        optimizer: any ``torch.optim`` class and its arguments, from YAML
            (``class_path: torch.optim.Adam``, ``init_args: {lr: 1e-3}``).
        scheduler: optional ``torch.optim.lr_scheduler`` class and its arguments, from YAML.
        scheduler_interval: step the scheduler every ``"epoch"`` or every optimiser ``"step"``.
        figure_examples: examples kept per evaluation for the figures (0: no figures).

    Class attributes a subclass declares: ``monitor`` (the metric that picks ``best.ckpt``) and
    ``monitor_mode`` (``"min"`` or ``"max"``). Network hyper-parameters are one config dataclass
    argument (stored as a plain dict in checkpoints); options that only change evaluation (decoding,
    figures) stay out of the checkpoint with ``save_hyperparameters(ignore=...)``.
    """

    monitor: ClassVar[str] = "val/loss"
    monitor_mode: ClassVar[Literal["min", "max"]] = "min"
    prediction_suffix: ClassVar[str] = ".txt"
    not_hyperparameters: ClassVar[tuple[str, ...]] = (
        "optimizer",
        "scheduler",
        "scheduler_interval",
        "figure_examples",
    )

    def __init__(
        self,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        figure_examples: int = 8,
    ) -> None:
        super().__init__()
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval, self.figure_examples = scheduler_interval, figure_examples
        self.losses = torch.nn.ModuleDict({f"{stage}_loss": MeanMetric() for stage in STAGES})
        self.examples: list[Any] = []
        self.checkpoint_step = 0

    def save_hyperparameters(self, *args: Any, ignore: Sequence[str] = (), **kwargs: Any) -> None:
        """Lightning's, minus the base's run options, with config dataclasses stored as plain dicts
        (a checkpoint then loads with ``weights_only=True``)."""
        super().save_hyperparameters(
            *args, ignore=[*self.not_hyperparameters, *ignore], frame=_caller_frame(), **kwargs
        )
        for name, value in list(self.hparams.items()):
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                self.hparams[name] = dataclasses.asdict(value)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Evaluating a checkpoint needs its weights, not the state of the callbacks that trained it;
        keep its step count for naming what the evaluation writes."""
        self.checkpoint_step = int(checkpoint.get("global_step", 0))
        if self._trainer is not None and self.trainer.state.fn != "fit":
            checkpoint.pop("callbacks", None)

    @property
    def trained_steps(self) -> int:
        """Optimiser steps behind the current weights: the running fit's, or the loaded checkpoint's."""
        if self._trainer is not None and self.trainer.state.fn == "fit":
            return self.trainer.global_step
        return self.checkpoint_step

    def log_loss(self, stage: str, loss: torch.Tensor, weight: int | torch.Tensor) -> None:
        """``<stage>/loss``: a running mean synchronised across processes, each batch's ``loss``
        weighted by the number of terms it averages (instances, or tokens for a per-token loss), so
        the epoch value is the same however the data is split into batches and processes."""
        metric = self.losses[f"{stage}_loss"]
        metric(loss.detach(), weight)  # forward: the step value for the progress bar too
        on_step = stage == "train"
        self.log(f"{stage}/loss", metric, on_step=on_step, on_epoch=not on_step, prog_bar=True)

    def log_metrics(self, stage: str, metric: Metric) -> dict[str, float]:
        """Compute a torchmetrics ``Metric`` whose ``compute()`` gives a dict (already reduced across
        processes), log it as ``<stage>/<name>``, reset it and return the values."""
        values = {name: float(value) for name, value in metric.compute().items()}
        self.log_dict({f"{stage}/{name}": value for name, value in values.items()})
        metric.reset()
        return values

    # figures (drawn by core.train.callbacks.ExampleFigures on rank 0)
    def keep_examples(self, examples: Sequence[Any]) -> None:
        """Keep the first ``figure_examples`` examples of an evaluation for its figures."""
        room = self.figure_examples - len(self.examples)
        if room > 0 and self.trainer.is_global_zero:
            self.examples.extend(examples[:room])

    def draw_examples(self, stage: str, examples: list[Any]) -> dict[str, Figure]:
        """Figures of the kept examples, by name; the app overrides this (default: none)."""
        return {}

    # predictions (written by core.train.callbacks.PredictionWriter on rank 0)
    def format_prediction(self, prediction: Any) -> str:
        """One prediction (an element of what ``predict_step`` returns) as the file's line(s) for it."""
        return str(prediction)

    def prediction_header(self) -> str | None:
        """A first line for the predictions file (a CSV header), or None for none."""
        return None

    # results.json (written by core.train.callbacks.ResultsWriter after `test`)
    def evaluation_protocol(self) -> dict[str, Any]:
        """How the test metrics were computed (decoding, masking, ranking…); the app adds its own."""
        return {"monitor": self.monitor}


def _caller_frame() -> Any:
    """The frame of the subclass ``__init__`` that called :meth:`AppTask.save_hyperparameters`."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None and frame.f_back.f_back is not None
    return frame.f_back.f_back
