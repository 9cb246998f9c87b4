"""PointerTask: loss, decoding, metrics, optimiser, logging, figures and predictions of a Ptr-Net."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from apps.pointer.constraints import teacher_forcing_masks
from apps.pointer.data import IGNORE_INDEX, Batch
from apps.pointer.decode import beam_search
from apps.pointer.metrics import Record, score, summarize
from apps.pointer.model import PointerNetwork
from apps.pointer.plots import examples_figure
from core.train.figures import save_figure


class PointerTask(L.LightningModule):
    """Train a :class:`PointerNetwork` with teacher forcing (cross-entropy over the pointer
    distribution) and evaluate it by decoding. The problem comes from the datamodule.

    Args:
        hidden_dim, num_layers, encoder, num_heads, ff_dim, dropout, init_range: the network.
        optimizer: ``"sgd"`` (the paper, lr 1.0) or ``"adam"``; lr; lr_decay: ×lr each epoch.
        mask_visited: during training too, restrict each step to the valid next positions (the same
            rules as constrained decoding) instead of only excluding padding.
        beam_width: 1 = greedy decoding for val/test/predict; constrained: decode valid outputs only.
        figure_examples: instances drawn in the figure of each validation run.
    """

    monitor = "val/loss"
    monitor_mode = "min"

    def __init__(
        self,
        hidden_dim: int = 256,
        num_layers: int = 1,
        encoder: Literal["lstm", "transformer"] = "lstm",
        num_heads: int = 8,
        ff_dim: int = 512,
        dropout: float = 0.0,
        init_range: float | None = 0.08,
        optimizer: Literal["sgd", "adam"] = "sgd",
        lr: float = 1.0,
        lr_decay: float = 1.0,
        mask_visited: bool = False,
        beam_width: int = 1,
        constrained: bool = True,
        figure_examples: int = 8,
    ) -> None:
        super().__init__()
        # decoding options stay out of the checkpoint: LightningCLI would let a checkpoint's saved
        # hyper-parameters override --model.beam_width at test/predict time
        self.save_hyperparameters(ignore=["beam_width", "constrained", "figure_examples"])
        self.beam_width, self.constrained = beam_width, constrained
        self.figure_examples = figure_examples
        self.model = PointerNetwork(
            hidden_dim, num_layers, encoder, num_heads, ff_dim, dropout, init_range
        )
        self.problem = "convex_hull"
        self.records: list[Record] = []
        self.examples: tuple[list, list, list] = ([], [], [])
        self.predictions: list[tuple[np.ndarray, np.ndarray]] = []
        self.test_outputs: list[np.ndarray] = []

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        self.problem = getattr(datamodule, "problem", self.problem)

    def loss(self, batch: Batch) -> torch.Tensor:
        targets = batch["targets"]
        allowed = None
        if self.hparams.mask_visited:
            key_mask = F.pad(batch["point_mask"], (1, 0), value=True)
            allowed = teacher_forcing_masks(self.problem, key_mask, targets)
        logits = self.model(batch["points"], batch["point_mask"], targets, allowed)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)

    def decode(self, batch: Batch) -> list[np.ndarray]:
        return beam_search(
            self.model,
            batch["points"],
            batch["point_mask"],
            self.problem,
            self.beam_width,
            self.constrained,
        )

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["raw_points"]))
        return loss

    def _evaluate(self, batch: Batch, stage: str) -> None:
        size = len(batch["raw_points"])
        self.log(f"{stage}/loss", self.loss(batch), prog_bar=True, batch_size=size)
        predictions = self.decode(batch)
        if stage == "test":
            self.test_outputs.extend(predictions)
        records = score(self.problem, batch["raw_points"], predictions, batch["raw_targets"])
        self.records.extend(records)
        points, preds, targets = self.examples
        room = self.figure_examples - len(points)
        points.extend(batch["raw_points"][:room])
        preds.extend(predictions[:room])
        targets.extend(batch["raw_targets"][:room])

    def _summarize(self, stage: str) -> dict[str, float]:
        summary = summarize(self.problem, self.records)
        self.log_dict({f"{stage}/{name}": value for name, value in summary.items()})
        points, preds, targets = self.examples
        if points and not self.trainer.sanity_checking:
            correct = [r["correct"] for r in self.records[: len(points)]]
            figure = examples_figure(self.problem, points, preds, targets, correct)
            save_figure(figure, self.trainer, f"{stage}_examples_step{self.global_step:06d}")
        self.records, self.examples = [], ([], [], [])
        return summary

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._summarize("val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._summarize("test")
        tsplib = getattr(self.trainer.datamodule, "tsplib", [])
        if tsplib:  # TSPLIB instances: lengths in the instance's own units (nint per edge)
            outputs = self.test_outputs[: len(tsplib)]
            targets = self.trainer.datamodule.sets["test"].targets
            self.log_dict(
                {
                    "test/tsplib_length": float(
                        np.mean([i.tour_length(o) for i, o in zip(tsplib, outputs, strict=True)])
                    ),
                    "test/tsplib_target_length": float(
                        np.mean([i.tour_length(t) for i, t in zip(tsplib, targets, strict=True)])
                    ),
                }
            )
        self.test_outputs = []

    def predict_step(self, batch: Batch, batch_idx: int) -> list[np.ndarray]:
        predictions = self.decode(batch)
        self.predictions.extend(zip(batch["raw_points"], predictions, strict=True))
        return predictions

    def on_predict_epoch_end(self) -> None:
        """Write ``predictions.txt`` (released format: ``x1 y1 … output i1 i2 …``) in the log dir."""
        path = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "predictions.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for points, order in self.predictions:
            coords = " ".join(f"{value:.8f}" for value in points.reshape(-1))
            lines.append(f"{coords} output {' '.join(str(int(i)) for i in order)}")
        path.write_text("\n".join(lines) + "\n")
        self.predictions = []
        print(f"predictions written to {path}")

    def configure_optimizers(self) -> dict:
        h = self.hparams
        if h.optimizer == "sgd":
            optimizer = torch.optim.SGD(self.parameters(), lr=h.lr)
        else:
            optimizer = torch.optim.Adam(self.parameters(), lr=h.lr)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=h.lr_decay)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
