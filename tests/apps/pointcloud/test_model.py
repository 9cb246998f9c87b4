"""The detector end to end: per-class NMS, both DSVT variants through the pipeline, and overfitting
a few fixed simulated frames (the network can learn boxes)."""

from __future__ import annotations

import numpy as np
import torch

from apps.pointcloud.boxes import iou_bev
from apps.pointcloud.dsvt import DSVTConfig
from apps.pointcloud.frames import VoxelGrid
from apps.pointcloud.head import build_targets, center_loss
from apps.pointcloud.model import Detector, DetectorConfig, per_class_nms
from apps.pointcloud.raycast import Sensor
from apps.pointcloud.scatterformer import ScatterFormerConfig
from apps.pointcloud.simulate import simulate_frame

GRID = VoxelGrid((0.0, -12.8, -3.0, 25.6, 12.8, 1.0), (0.32, 0.32, 4.0))
TINY = DetectorConfig(
    pfn_channels=(16, 32),
    bev_layers=(1, 1),
    bev_strides=(1, 2),
    bev_channels=(32, 32),
    bev_upsample_strides=(1, 2),
    bev_upsample_channels=(32, 32),
    head_channels=32,
)
TINY_DSVT = DSVTConfig(d_model=32, n_heads=4, d_ffn=64, blocks=2, set_size=16)


def test_nms_suppresses_within_a_class_only():
    box = torch.tensor([5.0, 0.0, -1.0, 4.0, 1.8, 1.5, 0.3])
    boxes = torch.stack([box, box + torch.tensor([0.2, 0, 0, 0, 0, 0, 0]), box])
    scores, labels = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 2])
    kept_boxes, kept_scores, kept_labels = per_class_nms(boxes, scores, labels, 0.1, 10)
    assert kept_scores.tolist() == [0.8999999761581421, 0.699999988079071]
    assert kept_labels.tolist() == [0, 2]
    assert torch.equal(kept_boxes[0], box)


def test_both_variants_run_the_pipeline(gen):
    points = torch.rand(3000, 4, generator=gen) * torch.tensor([25.6, 25.6, 4.0, 1.0])
    points -= torch.tensor([0.0, 12.8, 3.0, 0.0])
    batch_index = torch.arange(2).repeat_interleave(1500)
    voxel_grid = VoxelGrid(GRID.point_range, (0.32, 0.32, 0.5))  # 8 voxels high → pooled by 8
    variants = [
        (GRID, TINY_DSVT),
        (voxel_grid, DSVTConfig(**{**vars(TINY_DSVT), "z_pool_strides": (8,)})),
    ]
    for grid, backbone in variants:
        maps = Detector(TINY, backbone, ScatterFormerConfig(), grid)(points, batch_index, 2)
        assert maps["heatmap"].shape == (2, 3, 80, 80)
        assert maps["size"].shape == (2, 3, 80, 80) and maps["rot"].shape == (2, 2, 80, 80)


def test_a_batch_without_points_in_range_sees_an_empty_birds_eye_view():
    """The backbone is skipped (ScatterFormer's sparse convolutions refuse zero voxels) and the BEV
    CNN and head run on an all-zero image of the backbone's output size."""
    behind = torch.tensor([[-5.0, 0.0, -1.0, 0.5]])  # behind the sensor: outside the range
    small = ScatterFormerConfig(d_model=16, n_heads=2, pool_heads=2)
    for backbone in ("dsvt", "scatterformer"):
        config = DetectorConfig(**{**vars(TINY), "backbone": backbone})
        model = Detector(config, TINY_DSVT, small, GRID).eval()
        side = 80 // model.backbone.xy_stride
        with torch.no_grad():
            maps = model(behind, torch.zeros(1, dtype=torch.long), 1)
            empty = torch.zeros(1, model.backbone.out_channels, side, side)
            expected = model.head(model.bev(empty))
            detections = model.detect(maps)
        for name, value in expected.items():
            assert torch.equal(maps[name], value), name
        assert len(detections) == 1 and detections[0][0].shape[1] == 7


def frames(count: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``count`` simulated frames cut to GRID: (points, boxes, labels) of the objects inside it that
    are at most partly occluded."""
    out = []
    for index in range(count):
        scene = simulate_frame(np.random.default_rng([3, index]), Sensor(azimuth_steps=720))
        points, boxes = torch.from_numpy(scene.points), torch.from_numpy(scene.boxes)
        lower, upper = torch.tensor(GRID.point_range[:2]), torch.tensor(GRID.point_range[3:5])
        inside = ((boxes[:, :2] >= lower + 2) & (boxes[:, :2] < upper - 2)).all(1)
        keep = inside & torch.from_numpy(scene.occlusion < 2)  # objects the sensor sees
        out.append((points, boxes[keep], torch.from_numpy(scene.labels)[keep]))
    return out


def test_overfits_a_few_fixed_frames():
    torch.manual_seed(0)
    data = frames(2)
    points = torch.cat([p for p, _, _ in data])
    batch_index = torch.arange(2).repeat_interleave(torch.tensor([len(p) for p, _, _ in data]))
    boxes, labels = [b for _, b, _ in data], [lab for _, _, lab in data]
    assert sum(len(b) for b in boxes) >= 3
    model = Detector(TINY, TINY_DSVT, ScatterFormerConfig(), GRID)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        maps = model(points, batch_index, 2)
        targets = build_targets(boxes, labels, GRID, model.stride, maps["heatmap"].shape[-2:])
        loss = center_loss(maps, targets)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10
    for norm in model.modules():  # BatchNorm's running statistics from the final weights
        if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average: one pass sets them to its batch's
    with torch.no_grad():
        model(points, batch_index, 2)
    model.eval()
    with torch.no_grad():
        detections = model.detect(model(points, batch_index, 2), score_threshold=0.3)
    for (found, _, found_labels), true, true_labels in zip(detections, boxes, labels, strict=True):
        iou = iou_bev(true, found) * (true_labels[:, None] == found_labels[None, :])
        best = iou.amax(1) if len(found) else torch.zeros(len(true))
        assert (best > 0.5).all(), best  # every box found, and well placed
