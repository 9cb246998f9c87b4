"""The detector: points → voxels → pillar features → a sparse backbone → bird's-eye view → a
CenterPoint head, and the decoding of its maps into boxes.

The backbone sits behind one interface, ``forward(features [V, C], coords [V, 4], grid_shape) →
(features [V', C'], coords [V', 4] with z = 0, grid_shape')`` and an ``out_channels`` attribute, so
DSVT and ScatterFormer share the rest of the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn
from torch.profiler import record_function

from apps.pointcloud.bev import BEVBackbone, scatter_to_bev
from apps.pointcloud.boxes import rotated_nms
from apps.pointcloud.dsvt import DSVT, DSVTConfig
from apps.pointcloud.frames import CLASSES, VoxelGrid
from apps.pointcloud.head import CenterHead, decode
from apps.pointcloud.scatterformer import ScatterFormer, ScatterFormerConfig
from apps.pointcloud.voxelize import PillarFeatureNet, voxelize

Detections = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # boxes [k, 7], scores [k], labels [k]


@dataclass(frozen=True)
class DetectorConfig:
    """Everything around the backbone (DSVT's pillar model as CenterPoint-style detector).

    backbone: which sparse backbone, DSVT or ScatterFormer (each has its own config argument).
    pfn_channels: widths of the dynamic pillar feature net's layers (DSVT: 192, 192).
    bev_layers, bev_strides, bev_channels, bev_upsample_strides, bev_upsample_channels: the 2-D BEV
        backbone's stages (SECOND-style; DSVT uses a larger ResNet-style one).
    head_channels: width of the CenterPoint head's convolutions (CenterPoint: 64).
    box_weight: weight of the boxes' L1 loss against the heatmap's focal loss (2.0 in DSVT's and
        OpenPCDet's CenterPoint configs; CenterPoint's own nuScenes config uses 0.25).
    direction_weight: weight of the heading-direction cross-entropy (SECOND and PointPillars: 0.2).
    """

    backbone: Literal["dsvt", "scatterformer"] = "dsvt"
    pfn_channels: tuple[int, ...] = (192, 192)
    bev_layers: tuple[int, ...] = (1, 2, 2)
    bev_strides: tuple[int, ...] = (1, 2, 2)
    bev_channels: tuple[int, ...] = (128, 128, 256)
    bev_upsample_strides: tuple[int, ...] = (1, 2, 4)
    bev_upsample_channels: tuple[int, ...] = (128, 128, 128)
    head_channels: int = 64
    box_weight: float = 2.0
    direction_weight: float = 0.2


class Detector(nn.Module):
    """A single-stage LiDAR detector for :data:`CLASSES` over ``grid``.

    forward(points [N, 4], batch_index [N], batch_size) → the head's maps: ``heatmap`` [B, K, H, W]
    (logits), ``offset`` [B, 2, H, W], ``z`` [B, 1, H, W], ``size`` [B, 3, H, W] (log), ``rot``
    [B, 2, H, W] (sin 2θ, cos 2θ), ``direction`` [B, 1, H, W] (logit). Each stage runs under a
    profiler label (``pointcloud/<stage>``) for the latency breakdown.
    """

    def __init__(
        self,
        config: DetectorConfig,
        dsvt: DSVTConfig,
        scatterformer: ScatterFormerConfig,
        grid: VoxelGrid,
    ) -> None:
        super().__init__()
        self.config, self.grid = config, grid
        self.pfn = PillarFeatureNet(4, config.pfn_channels, grid=grid)
        self.backbone: DSVT | ScatterFormer
        if config.backbone == "dsvt":
            self.backbone = DSVT(self.pfn.out_channels, dsvt)
        else:  # its pooling over height is sized by the grid's
            sized = replace(scatterformer, grid_height=grid.shape[0])
            self.backbone = ScatterFormer(self.pfn.out_channels, sized)
        self.bev = BEVBackbone(
            self.backbone.out_channels,
            config.bev_layers,
            config.bev_strides,
            config.bev_channels,
            config.bev_upsample_strides,
            config.bev_upsample_channels,
        )
        self.head = CenterHead(self.bev.out_channels, len(CLASSES), config.head_channels)

    @property
    def stride(self) -> int:
        """Cells of the voxel grid per cell of the head's maps (backbone × BEV CNN)."""
        return self.backbone.xy_stride * self.bev.stride

    def forward(
        self, points: torch.Tensor, batch_index: torch.Tensor, batch_size: int
    ) -> dict[str, torch.Tensor]:
        with record_function("pointcloud/voxelize"):
            voxels = voxelize(points, batch_index, self.grid, batch_size)
        with record_function("pointcloud/pfn"):
            features = self.pfn(voxels)
        with record_function("pointcloud/backbone"):
            if len(features):
                features, coords, shape = self.backbone(features, voxels.coords, self.grid.shape)
            else:  # no point in range in the whole batch: an empty bird's-eye view
                features, coords = features.new_zeros(0, self.backbone.out_channels), voxels.coords
                shape = (1, *(-(-n // self.backbone.xy_stride) for n in self.grid.shape[1:]))
        with record_function("pointcloud/bev"):
            bev = self.bev(scatter_to_bev(features, coords, batch_size, shape[1:]))
        with record_function("pointcloud/head"):
            return self.head(bev)

    @torch.no_grad()
    def detect(
        self,
        maps: dict[str, torch.Tensor],
        score_threshold: float = 0.1,
        nms_iou: float = 0.1,
        max_detections: int = 100,
    ) -> list[Detections]:
        """Per frame: the head's peaks above ``score_threshold``, then rotated NMS per class at
        ``nms_iou`` (BEV IoU), at most ``max_detections`` boxes by descending score."""
        with record_function("pointcloud/decode"):
            peaks = decode(maps, self.grid, self.stride, max_detections, score_threshold)
            return [per_class_nms(*frame, nms_iou, max_detections) for frame in peaks]


def per_class_nms(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou: float, limit: int
) -> Detections:
    """Rotated NMS within each class (boxes of different classes never suppress each other), the
    survivors ordered by descending score."""
    kept = [
        members[rotated_nms(boxes[members], scores[members], iou, limit)]
        for members in (torch.nonzero(labels == c).squeeze(1) for c in range(len(CLASSES)))
    ]
    keep = torch.cat(kept)
    keep = keep[scores[keep].argsort(descending=True)[:limit]]
    return boxes[keep], scores[keep], labels[keep]
