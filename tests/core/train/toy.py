"""A tiny regression task for exercising the shared CLI (not an app)."""

from __future__ import annotations

import lightning as L
import matplotlib.pyplot as plt
import torch
from torch.utils.data import DataLoader, TensorDataset

from core.train import cli_main, save_figure


class ToyTask(L.LightningModule):
    monitor = "val/loss"

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Linear(2, 1)

    def _loss(self, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def training_step(self, batch, _):
        loss = self._loss(batch)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, _):
        self.log("val/loss", self._loss(batch))

    def test_step(self, batch, _):
        self.log("test/loss", self._loss(batch))

    def predict_step(self, batch, _):
        return self.net(batch[0])

    def on_validation_epoch_end(self) -> None:
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, float(self.net.weight[0, 0])])
        save_figure(fig, self.trainer, "weights")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class ToyData(L.LightningDataModule):
    def __init__(self, size: int = 64) -> None:
        super().__init__()
        self.size = size

    def _loader(self) -> DataLoader:
        x = torch.randn(self.size, 2, generator=torch.Generator().manual_seed(0))
        return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)

    train_dataloader = val_dataloader = test_dataloader = predict_dataloader = _loader


def main(args: list[str] | None = None):
    return cli_main(ToyTask, ToyData, "toy", args=args)


if __name__ == "__main__":
    main()
