"""PointerTask: the loss, decoding, metrics, figures and prediction format of a Ptr-Net."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from apps.pointer.constraints import Problem, teacher_forcing_masks
from apps.pointer.data import IGNORE_INDEX, PointBatch, TsplibCase
from apps.pointer.decode import beam_search
from apps.pointer.metrics import RECORDS, PointerMetrics, tsplib_summary
from apps.pointer.model import PointerConfig, PointerNetwork
from apps.pointer.plots import examples_figure, pointer_steps_figure
from core.inspect import Recording
from core.nn import PointerAttention
from core.train import AppTask, as_config
from core.train.figures import write_png


def target_count(batch: PointBatch) -> torch.Tensor:
    """The target positions the per-token loss averages over (EOS included, padding not)."""
    return (batch.targets != IGNORE_INDEX).sum()


class PointerTask(AppTask):
    """Train a :class:`PointerNetwork` with teacher forcing (cross-entropy over the pointer
    distribution) and evaluate it by decoding.

    Args:
        net: the network's hyper-parameters.
        problem: ``convex_hull``, ``delaunay`` or ``tsp`` — linked from ``--data.problem``.
        mask_visited: during training too, restrict each step to the valid next positions (the same
            rules as constrained decoding) instead of only excluding padding.
        beam_width: 1 = greedy decoding for val/test/predict; constrained: decode valid outputs
            only. Both change evaluation only and stay out of the checkpoint.
        optimizer, scheduler, scheduler_interval, figure_examples: see :class:`core.train.AppTask`.
    """

    monitor = "val/loss"
    monitor_mode = "min"

    def __init__(
        self,
        net: PointerConfig = PointerConfig(),
        problem: Problem = "convex_hull",
        mask_visited: bool = False,
        beam_width: int = 1,
        constrained: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["beam_width", "constrained"])
        self.problem, self.mask_visited = problem, mask_visited
        self.beam_width, self.constrained = beam_width, constrained
        self.model = PointerNetwork(as_config(PointerConfig, net))
        self.metrics = torch.nn.ModuleDict(
            {f"{stage}_metrics": PointerMetrics(problem) for stage in ("val", "test")}
        )
        self.tsplib: list[tuple[TsplibCase, np.ndarray]] = []  # TSPLIB test cases, decoded
        self.tsplib_sources: list[str] = []  # what their gaps were measured against

    def loss(self, batch: PointBatch) -> torch.Tensor:
        allowed = None
        if self.mask_visited:
            key_mask = F.pad(batch.point_mask, (1, 0), value=True)
            allowed = teacher_forcing_masks(self.problem, key_mask, batch.targets)
        logits = self.model(batch.points, batch.point_mask, batch.targets, allowed)
        return F.cross_entropy(
            logits.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE_INDEX
        )

    def decode(self, batch: PointBatch) -> list[np.ndarray]:
        return beam_search(
            self.model,
            batch.points,
            batch.point_mask,
            self.problem,
            self.beam_width,
            self.constrained,
        )

    def training_step(self, batch: PointBatch, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log_loss("train", loss, target_count(batch))
        return loss

    def _evaluate(self, batch: PointBatch, stage: str) -> list[np.ndarray]:
        self.log_loss(stage, self.loss(batch), target_count(batch))
        predictions = self.decode(batch)
        self.metrics[f"{stage}_metrics"].update(batch.raw_points, predictions, batch.raw_targets)
        self.keep_examples(list(zip(batch.raw_points, predictions, batch.raw_targets, strict=True)))
        return predictions

    def validation_step(self, batch: PointBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_metrics("val", self.metrics["val_metrics"])

    def test_step(self, batch: PointBatch, batch_idx: int) -> None:
        predictions = self._evaluate(batch, "test")
        cases = zip(batch.tsplib, predictions, strict=True)
        self.tsplib += [(case, tour) for case, tour in cases if case is not None]

    def on_test_epoch_end(self) -> None:
        self.log_metrics("test", self.metrics["test_metrics"])
        if self.tsplib:  # lengths in the instances' own units (TSPLIB: nint per edge)
            cases, tours = zip(*self.tsplib, strict=True)
            summary = tsplib_summary(
                [c.instance for c in cases], tours, [c.reference_length for c in cases]
            )
            self.log_dict({f"test/{name}": value for name, value in summary.items()})
            self.tsplib_sources = sorted({c.reference_source for c in cases})
        self.tsplib = []

    def predict_step(
        self, batch: PointBatch, batch_idx: int
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        return list(zip(batch.raw_points, self.decode(batch), strict=True))

    def format_prediction(self, prediction: tuple[np.ndarray, np.ndarray]) -> str:
        """The released format: ``x1 y1 x2 y2 … output i1 i2 …``."""
        points, order = prediction
        coords = " ".join(f"{value:.8f}" for value in points.reshape(-1))
        return f"{coords} output {' '.join(str(int(i)) for i in order)}"

    def draw_examples(self, stage: str, examples: list[Any]) -> dict[str, Figure]:
        points, predictions, targets = zip(*examples, strict=True)
        record = RECORDS[self.problem]
        correct = [record(*example)["correct"] for example in examples]
        return {"examples": examples_figure(self.problem, points, predictions, targets, correct)}

    def render_attention(self, recording: Recording, out_dir: Path) -> list[Path]:
        """Hook of ``core.inspect.AttentionInspector``: the pointer distribution at every decoding
        step of the first instances of the first recorded batch (with beams: beam slot 0)."""
        (layer,) = recording.layer_names(PointerAttention)
        decodings = [
            kept
            for kept in recording.weights.get(layer, [])
            if kept.steps > 1 and kept.batch_index == 0  # steps > 1: decoded, not teacher-forced
        ]
        if not decodings:
            return []
        batch = recording.batches[0]
        count = min(4, len(batch))
        steps = [decodings[0].weights[i * self.beam_width][0].numpy() for i in range(count)]
        figure = pointer_steps_figure(batch.raw_points[:count], steps)
        return [write_png(figure, out_dir / "pointer_steps.png")]

    def evaluation_protocol(self) -> dict[str, Any]:
        return {
            **super().evaluation_protocol(),
            "problem": self.problem,
            "decoding": "greedy"
            if self.beam_width == 1
            else f"beam search, width {self.beam_width}",
            "constrained": self.constrained,
            "invalid outputs": "count as wrong, coverage 0",
        } | ({"tsplib gap against": self.tsplib_sources} if self.tsplib_sources else {})
