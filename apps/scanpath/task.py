"""ScanpathTask: OAT's loss, scanpath generation, metrics, baselines, figures and prediction format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from apps.scanpath.baselines import BASELINES
from apps.scanpath.data import IGNORE_INDEX, ScanpathBatch
from apps.scanpath.decode import generate
from apps.scanpath.metrics import ScanpathMetrics, update_leave_one_out
from apps.scanpath.model import OAT, Encoded, OATConfig
from apps.scanpath.plots import attention_distance_figure, cross_attention_figure, scanpaths_figure
from apps.scanpath.scenes import Scanpath, Scene
from core.inspect import Recording, paused
from core.nn import MultiHeadAttention
from core.train import AppTask, InputError, as_config
from core.train.errors import input_file
from core.train.figures import run_folder, write_png

Example = tuple[Scene, np.ndarray, list[Scanpath]]  # display, predicted objects, humans


class ScanpathTask(AppTask):
    """Train :class:`OAT` with teacher forcing (cross-entropy over objects + EOS at every step) and
    evaluate generated scanpaths against every human scanpath of their display.

    Args:
        net: the network's hyper-parameters.
        grid, crop_size: linked from the data (positional grid, CNN crop size).
        max_fixations: generation limit, linked from the data (its longest scanpath).
        baseline_length: the baselines' stopping length, linked from the data (the training
            scanpaths' mean length).
        init_from: a checkpoint whose network weights start this one (fine-tuning, e.g. from the
            simulator to human data: the grid may differ, as position codes are not weights). Unlike
            ``--ckpt_path`` it resumes neither optimiser nor epochs. Not kept in the checkpoint.
        decoding: ``greedy`` or ``sampled`` (``samples`` scanpaths per display, generator seeded with
            ``decode_seed`` at the start of each evaluation). Evaluation only: not in the checkpoint.
        optimizer, scheduler, scheduler_interval, figure_examples: see :class:`core.train.AppTask`.
    """

    monitor = "val/SS"
    monitor_mode = "max"

    def __init__(
        self,
        net: OATConfig = OATConfig(),
        grid: tuple[int, int] = (6, 10),
        crop_size: tuple[int, int] = (150, 93),
        max_fixations: int = 60,
        baseline_length: float = 10.0,
        init_from: str | None = None,
        decoding: Literal["greedy", "sampled"] = "greedy",
        samples: int = 10,
        decode_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        evaluation_only = ["decoding", "samples", "decode_seed", "baseline_length"]
        self.save_hyperparameters(ignore=[*evaluation_only, "init_from"])
        self.model = OAT(as_config(OATConfig, net), tuple(grid), tuple(crop_size))
        if init_from is not None:
            load_network(self.model, init_from)
        self.max_fixations, self.baseline_length = max_fixations, baseline_length
        self.decoding, self.samples, self.decode_seed = decoding, samples, decode_seed
        self.generator = torch.Generator()
        self.recorded_paths: list[np.ndarray] = []  # the last generation an inspector recorded
        names = ["val", "test", "test_humans", *(f"test_{name}" for name in BASELINES)]
        self.metrics = torch.nn.ModuleDict({f"{name}_metrics": ScanpathMetrics() for name in names})

    def encode(self, batch: ScanpathBatch) -> Encoded:
        """The batch's displays through the encoder (once, whatever the number of scanpaths)."""
        return self.model.encode(batch.crops, batch.cells, batch.object_mask, batch.target_objects)

    def loss(self, batch: ScanpathBatch, encoded: Encoded | None = None) -> torch.Tensor:
        encoded = encoded or self.encode(batch)
        logits = self.model.decode(encoded, batch.scene_index, batch.inputs)
        return F.cross_entropy(
            logits.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE_INDEX
        )

    def training_step(self, batch: ScanpathBatch, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log_loss("train", loss, (batch.targets != IGNORE_INDEX).sum())
        return loss

    def predict_scanpaths(
        self, batch: ScanpathBatch, encoded: Encoded | None = None
    ) -> list[list[np.ndarray]]:
        """Per display, its generated scanpaths (one greedy, or ``samples`` sampled). Under an
        attention recording, generation runs unrecorded and one teacher-forced pass over the
        generated scanpaths is recorded instead (the attention of every generated fixation)."""
        encoded = encoded or self.encode(batch)
        per_scene = 1 if self.decoding == "greedy" else self.samples
        index = torch.arange(len(batch), device=batch.crops.device).repeat_interleave(per_scene)
        sample = self.decoding == "sampled"
        with paused() as recording:
            paths = generate(self.model, encoded, index, self.max_fixations, sample, self.generator)
        if recording is not None:
            self.model.decode(encoded, index, decoder_inputs(paths, index.device))
            self.recorded_paths = paths
        return [paths[i * per_scene : (i + 1) * per_scene] for i in range(len(batch))]

    def on_validation_epoch_start(self) -> None:
        self.generator.manual_seed(self.decode_seed)

    def on_test_epoch_start(self) -> None:
        self.generator.manual_seed(self.decode_seed)

    def on_predict_epoch_start(self) -> None:
        self.generator.manual_seed(self.decode_seed)

    def _evaluate(self, batch: ScanpathBatch, stage: str) -> list[list[np.ndarray]]:
        encoded = self.encode(batch)
        self.log_loss(stage, self.loss(batch, encoded), (batch.targets != IGNORE_INDEX).sum())
        predicted = self.predict_scanpaths(batch, encoded)
        update(self.metrics[f"{stage}_metrics"], batch.scenes, predicted, batch.scanpaths)
        self.keep_examples(
            [(s, p[0], h) for s, p, h in zip(batch.scenes, predicted, batch.scanpaths, strict=True)]
        )
        return predicted

    def validation_step(self, batch: ScanpathBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_metrics("val", self.metrics["val_metrics"])

    def test_step(self, batch: ScanpathBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")
        length = max(1, round(self.baseline_length))
        for name, baseline in BASELINES.items():
            paths = [[baseline(scene, length)] for scene in batch.scenes]
            update(self.metrics[f"test_{name}_metrics"], batch.scenes, paths, batch.scanpaths)
        for scene, humans in zip(batch.scenes, batch.scanpaths, strict=True):
            paths, size = [h.objects for h in humans], (scene.width, scene.height)
            update_leave_one_out(
                self.metrics["test_humans_metrics"], paths, scene.target, scene.centres, size
            )

    def on_test_epoch_end(self) -> None:
        self.log_metrics("test", self.metrics["test_metrics"])
        for name in ("humans", *BASELINES):  # their human_* statistics are test/human_*
            metric = self.metrics[f"test_{name}_metrics"]
            values = metric.compute().items()
            self.log_dict(
                {f"test/{name}/{k}": float(v) for k, v in values if not k.startswith("human_")}
            )
            metric.reset()

    def predict_step(self, batch: ScanpathBatch, batch_idx: int) -> list[tuple[Scene, list]]:
        predicted = self.predict_scanpaths(batch)
        self.keep_examples(
            [(s, p[0], h) for s, p, h in zip(batch.scenes, predicted, batch.scanpaths, strict=True)]
        )
        return list(zip(batch.scenes, predicted, strict=True))

    def on_predict_epoch_end(self) -> None:
        """``predicted_scanpaths.png`` beside the predictions: the first displays' generated scanpaths
        (over the user's picture when one was given)."""
        if self.examples:
            write_png(
                scanpaths_figure(self.examples),
                run_folder(self.trainer) / "predicted_scanpaths.png",
            )
        self.examples = []

    def format_prediction(self, prediction: tuple[Scene, list[np.ndarray]]) -> str:
        """One JSON line per display: its name, and per generated scanpath the fixated objects and
        their box centres in pixels."""
        scene, paths = prediction
        centres = scene.centres
        return json.dumps(
            {
                "name": scene.name,
                "scanpaths": [
                    {
                        "objects": [int(i) for i in path],
                        "X": [round(float(centres[i, 0]), 1) for i in path],
                        "Y": [round(float(centres[i, 1]), 1) for i in path],
                    }
                    for path in paths
                ],
            }
        )

    prediction_suffix = ".jsonl"

    def draw_examples(self, stage: str, examples: list[Example]) -> dict[str, Figure]:
        return {"scanpaths": scanpaths_figure(examples)}

    def attention_positions(self, batch: ScanpathBatch) -> torch.Tensor:
        """Encoder tokens' grid (row, col) for ``mean_distance``; the target token sits at the grid
        centre (it has no place on the display)."""
        centre = torch.tensor(self.model.grid, device=batch.cells.device) // 2
        target = centre.expand(len(batch), 1, 2)
        return torch.cat([target, batch.cells], dim=1).float()

    def render_attention(self, recording: Recording, out_dir: Path) -> list[Path]:
        """Hook of ``core.inspect.AttentionInspector``: for the first displays of the first recorded
        batch, the last decoder layer's cross-attention over the objects at each generated fixation
        (the recorded teacher-forced pass over the generated scanpaths); and every encoder head's
        attention against grid distance beside the positional code's Gaussian prior."""
        if not recording.batches:
            return []
        batch: ScanpathBatch = recording.batches[0]
        layers = recording.layer_names(MultiHeadAttention)
        cross = [name for name in layers if name.endswith("cross_attn")][-1]
        encoder = [name for name in layers if name.startswith("model.encoder")]
        first = {
            name: [kept for kept in recording.weights.get(name, []) if kept.batch_index == 0]
            for name in [cross, *encoder]
        }
        written = []
        per_scene = len(self.recorded_paths) // len(batch)
        if first[cross] and self.recorded_paths:
            replay = first[cross][-1].weights  # after the loss's pass over the human scanpaths
            count = min(4, len(batch))
            paths = [self.recorded_paths[i * per_scene] for i in range(count)]
            steps = [
                replay[i * per_scene].mean(0)[: len(path), 1:].numpy()
                for i, path in enumerate(paths)
            ]
            figure = cross_attention_figure(batch.scenes[:count], steps, paths)
            written.append(write_png(figure, out_dir / "cross_attention.png"))
        if all(first[name] for name in encoder):
            weights = {name: first[name][0].weights for name in encoder}
            figure = attention_distance_figure(batch.scenes, weights, self.model.config.sigma)
            written.append(write_png(figure, out_dir / "encoder_distance.png"))
        return written

    def evaluation_protocol(self) -> dict[str, Any]:
        return {
            **super().evaluation_protocol(),
            "decoding": "greedy"
            if self.decoding == "greedy"
            else f"sampled, {self.samples} per display, seed {self.decode_seed}",
            "comparison": "each generated scanpath against every human scanpath of its display",
            "humans": "leave-one-out: each human against the other humans of the display",
            "baselines": f"{', '.join(BASELINES)}, stopping after {round(self.baseline_length)}",
            "MultiMatch": "object box centres, constant durations; MM = mean of 4 dimensions",
        }


def load_network(model: OAT, path: str) -> None:
    """Copy the network weights of the task checkpoint ``path`` into ``model``, refusing a
    checkpoint of another architecture with a clear message."""
    checkpoint = input_file(path, "a scanpath checkpoint (.ckpt) for --model.init_from")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True).get("state_dict", {})
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    own = model.state_dict()
    if weights.keys() != own.keys() or any(v.shape != own[k].shape for k, v in weights.items()):
        raise InputError(f"{path}: not an OAT of this configuration (net, crop_size) to start from")
    model.load_state_dict(weights)


def decoder_inputs(paths: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """``[P, T]`` decoder inputs that replay generated scanpaths: BOS, then each fixation but the
    last (step t then sees what the generation saw when it chose fixation t)."""
    inputs = torch.zeros(len(paths), max(len(p) for p in paths), dtype=torch.long)
    for row, path in enumerate(paths):
        inputs[row, 1 : len(path)] = torch.from_numpy(path[:-1].astype(np.int64)) + 1
    return inputs.to(device)


def update(
    metric: ScanpathMetrics,
    scenes: list[Scene],
    predicted: list[list[np.ndarray]],
    humans: list[list[Scanpath]],
) -> None:
    """Score each display's generated scanpaths against its human scanpaths."""
    rows = [
        (path, [h.objects for h in people], scene)
        for scene, paths, people in zip(scenes, predicted, humans, strict=True)
        for path in paths
        if people
    ]
    if rows:
        metric.update(
            [path for path, _, _ in rows],
            [people for _, people, _ in rows],
            [scene.target for _, _, scene in rows],
            [scene.centres for _, _, scene in rows],
            [(scene.width, scene.height) for _, _, scene in rows],
        )
