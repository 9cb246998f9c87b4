"""A tiny regression task on the shared base classes, for exercising the CLI (not an app)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch.utils.data import TensorDataset

from core.train import AppDataModule, AppTask, InputError, as_config, cli_main


@dataclass(frozen=True)
class ToyConfig:
    """The toy network: ``in_dim`` inputs (linked from the data) → one output."""

    in_dim: int = 2
    bias: bool = True


class ToyTask(AppTask):
    monitor = "val/loss"

    def __init__(
        self,
        net: ToyConfig = ToyConfig(),
        interrupt_at_step: int | None = None,
        step_seconds: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["interrupt_at_step", "step_seconds"])
        self.interrupt_at_step, self.step_seconds = interrupt_at_step, step_seconds
        self.config = as_config(ToyConfig, net)
        self.net = torch.nn.Linear(self.config.in_dim, 1, bias=self.config.bias)

    def _loss(self, batch: list[torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
        if self.global_step == self.interrupt_at_step:
            raise KeyboardInterrupt  # what Ctrl-C raises
        time.sleep(self.step_seconds)
        loss = self._loss(batch)
        self.log_loss("train", loss, len(batch[0]))
        return loss

    def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
        self.log_loss("val", self._loss(batch), len(batch[0]))
        self.keep_examples(list(batch[0]))

    def test_step(self, batch: list[torch.Tensor], _: int) -> None:
        self.log_loss("test", self._loss(batch), len(batch[0]))
        self.keep_examples(list(batch[0]))

    def predict_step(self, batch: list[torch.Tensor], _: int) -> list[float]:
        return self.net(batch[0])[:, 0].tolist()

    def format_prediction(self, prediction: float) -> str:
        return f"{prediction:.6f}"

    def draw_examples(self, stage: str, examples: list[Any]) -> dict[str, Figure]:
        fig, ax = plt.subplots()
        ax.plot([float(x[0]) for x in examples])
        return {"inputs": fig}


class ToyData(AppDataModule):
    """``size`` random inputs of ``in_dim`` features; the target is their sum."""

    def __init__(self, size: int = 64, in_dim: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size, self.in_dim = size, in_dim

    def setup(self, stage: str) -> None:
        if self.size <= 0:
            raise InputError(f"toy data: size must be positive, got {self.size}")
        x = torch.randn(self.size, self.in_dim, generator=torch.Generator().manual_seed(self.seed))
        data = TensorDataset(x, x.sum(1, keepdim=True))
        self.datasets = {split: data for split in ("train", "val", "test", "predict")}


def main(args: list[str] | None = None):
    return cli_main(ToyTask, ToyData, "toy", args=args, links=[("data.in_dim", "model.net.in_dim")])


if __name__ == "__main__":
    main()
