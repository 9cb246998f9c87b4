"""PointCloudTask: CenterPoint losses, KITTI-style AP, bird's-eye-view figures, KITTI-format
predictions and the set attention drawn in bird's-eye view."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from apps.pointcloud.attention import render_set_attention
from apps.pointcloud.data import PointCloudBatch
from apps.pointcloud.dsvt import DSVTConfig
from apps.pointcloud.frames import CLASSES, VoxelGrid
from apps.pointcloud.head import build_targets, center_loss
from apps.pointcloud.metrics import KittiAP
from apps.pointcloud.model import Detections, Detector, DetectorConfig
from apps.pointcloud.plots import Example, bev_figure
from apps.pointcloud.readers import format_kitti_label
from apps.pointcloud.scatterformer import ScatterFormerConfig
from core.inspect import Recording
from core.train import AppTask, as_config
from core.train.figures import run_folder, write_png

log = logging.getLogger(__name__)
FIGURE_POINTS = 20_000  # points drawn per frame in a figure (every k-th point beyond)


class PointCloudTask(AppTask):
    """Train :class:`Detector` with CenterPoint's losses (focal heatmap + L1 boxes) and evaluate
    KITTI-style AP (R40, BEV and 3-D) with rotated NMS.

    Args:
        net: the detector around the backbone.
        dsvt: the DSVT backbone's hyper-parameters (used when ``net.backbone`` is ``dsvt``).
        scatterformer: the ScatterFormer backbone's (when ``net.backbone`` is ``scatterformer``).
        grid: point range and voxel size, linked from the data.
        score_threshold, nms_iou, max_detections: decoding (evaluation only).
        difficulty: the KITTI difficulty evaluated (0 easy, 1 moderate, 2 hard; ground truth above it
            is ignored). Evaluation only.
        optimizer, scheduler, scheduler_interval, figure_examples: see :class:`core.train.AppTask`.
    """

    monitor = "val/mAP_BEV"
    monitor_mode = "max"

    def __init__(
        self,
        net: DetectorConfig = DetectorConfig(),
        dsvt: DSVTConfig = DSVTConfig(),
        scatterformer: ScatterFormerConfig = ScatterFormerConfig(),
        grid: VoxelGrid = VoxelGrid(),
        score_threshold: float = 0.1,
        nms_iou: float = 0.1,
        max_detections: int = 100,
        difficulty: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        evaluation_only = ["score_threshold", "nms_iou", "max_detections", "difficulty"]
        self.save_hyperparameters(ignore=evaluation_only)
        self.grid = as_config(VoxelGrid, grid)
        self.model = Detector(
            as_config(DetectorConfig, net),
            as_config(DSVTConfig, dsvt),
            as_config(ScatterFormerConfig, scatterformer),
            self.grid,
        )
        self.score_threshold, self.nms_iou = score_threshold, nms_iou
        self.max_detections, self.difficulty = max_detections, difficulty
        self.skipped_steps = 0  # training steps whose loss was not finite (bf16/fp16 NaN guard)
        self.metrics = torch.nn.ModuleDict(
            {f"{stage}_metrics": KittiAP(difficulty=difficulty) for stage in ("val", "test")}
        )

    def compute_losses(
        self, batch: PointCloudBatch
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        """CenterPoint's losses, the head's maps, and the objects the losses average over (at
        least 1): the weight that makes the epoch's mean loss independent of the batching."""
        maps = self.model(batch.points, batch.batch_index, len(batch))
        targets = build_targets(
            batch.boxes, batch.labels, self.grid, self.model.stride, maps["heatmap"].shape[-2:]
        )
        config = self.model.config
        losses = center_loss(
            maps, targets, box_weight=config.box_weight, direction_weight=config.direction_weight
        )
        return losses, maps, targets.mask.sum().clamp(min=1)

    def training_step(self, batch: PointCloudBatch, batch_idx: int) -> torch.Tensor | None:
        losses, _, objects = self.compute_losses(batch)
        if not torch.isfinite(losses["loss"]):
            self.skipped_steps += 1
            log.warning(
                "step %d: non-finite loss (%s), step skipped (%d so far)",
                self.global_step,
                {k: float(v) for k, v in losses.items()},
                self.skipped_steps,
            )
            return None  # Lightning skips backward and the optimiser step
        self.log_loss("train", losses["loss"], objects)
        self.log_dict({f"train/{k}_loss": v for k, v in losses.items() if k != "loss"})
        return losses["loss"]

    def detect(self, maps: dict[str, torch.Tensor]) -> list[Detections]:
        return self.model.detect(maps, self.score_threshold, self.nms_iou, self.max_detections)

    def _evaluate(self, batch: PointCloudBatch, stage: str) -> None:
        losses, maps, objects = self.compute_losses(batch)
        self.log_loss(stage, losses["loss"], objects)
        detections = self.detect(maps)
        truth = list(zip(batch.boxes, batch.labels, batch.difficulty, strict=True))
        self.metrics[f"{stage}_metrics"].update(detections, truth)
        self.keep_examples(examples(batch, detections))

    def validation_step(self, batch: PointCloudBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_metrics("val", self.metrics["val_metrics"])

    def test_step(self, batch: PointCloudBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.log_metrics("test", self.metrics["test_metrics"])

    def predict_step(self, batch: PointCloudBatch, batch_idx: int) -> list[tuple[str, list[str]]]:
        """Per frame its KITTI result lines (camera frame of the frame's calibration); each frame's
        file is also written to ``kitti_labels/<frame>.txt`` in the run folder (the devkit's
        layout)."""
        detections = self.detect(self.model(batch.points, batch.batch_index, len(batch)))
        self.keep_examples(examples(batch, detections))
        folder = run_folder(self.trainer) / "kitti_labels"
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for frame_id, calib, (boxes, scores, labels) in zip(
            batch.frame_ids, batch.calibs, detections, strict=True
        ):
            lines = format_kitti_label(boxes.cpu(), labels.cpu(), scores.cpu(), calib)
            (folder / f"{Path(frame_id).stem}.txt").write_text("".join(f"{x}\n" for x in lines))
            out.append((frame_id, lines))
        return out

    def on_predict_epoch_end(self) -> None:
        """``predicted_bev.png`` beside the predictions: the first frames' boxes over their points."""
        if self.examples:
            write_png(bev_figure(self.examples), run_folder(self.trainer) / "predicted_bev.png")
        self.examples = []

    def format_prediction(self, prediction: tuple[str, list[str]]) -> str:
        """A frame's KITTI result lines, each prefixed by the frame's name (a comment line when
        nothing was detected)."""
        frame_id, lines = prediction
        return "\n".join(f"{frame_id} {line}" for line in lines) or f"# {frame_id}: no boxes"

    def draw_examples(self, stage: str, examples: list[Example]) -> dict[str, Figure]:
        return {"bev": bev_figure(examples)}

    def render_attention(self, recording: Recording, out_dir: Path) -> list[Path]:
        """Hook of ``core.inspect.AttentionInspector``: a few query voxels' set attention in
        bird's-eye view over the points, and every head's entropy against set size."""
        return render_set_attention(self.model, recording, out_dir)

    def evaluation_protocol(self) -> dict[str, Any]:
        return {
            **super().evaluation_protocol(),
            "AP": "KITTI R40 (40 recall points), BEV and 3-D, rotated IoU",
            "IoU thresholds": dict(zip(CLASSES, (0.7, 0.5, 0.5), strict=True)),
            "difficulty": ("easy", "moderate", "hard")[self.difficulty],
            "ignored": "KITTI's rules (Van as Car, Person_sitting as Pedestrian, too small or "
            "occluded boxes) and boxes outside point_range",
            "decoding": f"score ≥ {self.score_threshold}, per-class rotated NMS at BEV IoU "
            f"{self.nms_iou}, at most {self.max_detections} boxes",
        }


def examples(batch: PointCloudBatch, detections: list[Detections]) -> list[Example]:
    """Per frame, what the figure draws: a subset of its points, its true and detected boxes."""
    out = []
    for i, (boxes, scores, labels) in enumerate(detections):
        points = batch.points[batch.batch_index == i]
        points = points[:: -(-len(points) // FIGURE_POINTS) or 1]  # every k-th point
        out.append(
            Example(
                batch.frame_ids[i],
                points.cpu(),
                batch.boxes[i].cpu(),
                batch.labels[i].cpu(),
                boxes.cpu(),
                scores.cpu(),
                labels.cpu(),
            )
        )
    return out
