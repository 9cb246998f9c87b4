"""CenterPoint-style detection head (Yin et al., CVPR 2021): objects as heatmap peaks in BEV.

Each class has a heatmap whose peaks are box centres; at a peak's cell the head regresses the
sub-cell offset of the centre, its height z, log sizes and (sin 2θ, cos 2θ) of the yaw θ, and
classifies the heading's direction along that axis. Training targets splat a gaussian per box
(radius from CornerNet's formula, as CenterPoint), the heatmap loss is the CornerNet/CenterNet
penalty-reduced focal loss, the box loss an L1 and the direction loss a binary cross-entropy at the
centre cells.

Why 2θ plus a direction bit (as SECOND's direction classifier) rather than CenterPoint's
(sin θ, cos θ): a box is the same box turned by π, and a car's points often cannot tell front from
back. Regressing (sin θ, cos θ) then averages the two answers towards (0, 0), whose angle is noise;
(sin 2θ, cos 2θ) is the same for both, so the box's axis, which alone decides its IoU, is learnt
cleanly, and the heading's sign is a separate yes/no question.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from apps.pointcloud.frames import BOX_DIM, CLASSES, VoxelGrid

REGRESSION_CHANNELS: dict[str, int] = {"offset": 2, "z": 1, "size": 3, "rot": 2}
"""Regression branches in the order of the 8 target channels: (off x, off y, z, log dx, log dy,
log dz, sin 2·yaw, cos 2·yaw)."""

HEATMAP_PRIOR = 0.1
"""CenterNet's initial heatmap probability: the logit bias starts at log(0.1 / 0.9) ≈ −2.19."""

PROBABILITY_CLAMP = 1e-4
"""Heatmap probabilities are clamped to [1e-4, 1 − 1e-4] before the focal loss takes logs."""


class CenterHead(nn.Module):
    """BEV features [B, C, H, W] → dict of maps: heatmap [B, K, H, W] (logits), offset [B, 2, H, W],
    z [B, 1, H, W], size [B, 3, H, W] (log dx, dy, dz), rot [B, 2, H, W] (sin 2θ, cos 2θ),
    direction [B, 1, H, W] (logit that the heading is the axis angle + π)."""

    def __init__(self, in_channels: int, num_classes: int = 3, head_channels: int = 64) -> None:
        super().__init__()
        self.shared = nn.Sequential(
            nn.Conv2d(in_channels, head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_channels),
            nn.ReLU(inplace=True),
        )
        outputs = {"heatmap": num_classes, **REGRESSION_CHANNELS, "direction": 1}
        self.branches = nn.ModuleDict(
            {name: _branch(head_channels, n) for name, n in outputs.items()}
        )
        heatmap_out = self.branches["heatmap"][-1]
        nn.init.constant_(heatmap_out.bias, math.log(HEATMAP_PRIOR / (1 - HEATMAP_PRIOR)))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.shared(features)
        return {name: branch(shared) for name, branch in self.branches.items()}


def _branch(channels: int, out_channels: int) -> nn.Sequential:
    """Conv3×3-BN-ReLU then a 1×1 convolution to ``out_channels``."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, out_channels, 1),
    )


def regression_maps(preds: dict[str, torch.Tensor]) -> torch.Tensor:
    """The 8 regression channels [B, 8, H, W] in target order."""
    return torch.cat([preds[name] for name in REGRESSION_CHANNELS], dim=1)


# --- targets ---------------------------------------------------------------------------------


@dataclass
class CenterTargets:
    """Training targets of a batch on an output map of H × W cells.

    heatmap: [B, K, H, W] gaussian peaks (1 at each centre cell).
    index: int64 [B, max_objects] centre cell (row · W + col) of each object slot.
    mask: bool [B, max_objects] which slots hold an object.
    regression: [B, max_objects, 8] (off x, off y, z, log dx, log dy, log dz, sin 2θ, cos 2θ).
    direction: [B, max_objects] 1.0 where the heading is the axis angle + π (see ``yaw_direction``).
    outside: int64 [B] boxes skipped because their centre lies off the map.
    overflow: int64 [B] boxes skipped because the frame already had max_objects.
    """

    heatmap: torch.Tensor
    index: torch.Tensor
    mask: torch.Tensor
    regression: torch.Tensor
    direction: torch.Tensor
    outside: torch.Tensor
    overflow: torch.Tensor


def gaussian_radius(length: torch.Tensor, width: torch.Tensor, min_overlap: float) -> torch.Tensor:
    """CornerNet's gaussian radius (cells) for boxes length × width cells, as CenterPoint uses it.

    The smallest of three radii keeping a corner-shifted box's IoU with the truth ≥ ``min_overlap``
    (CornerNet's quadratic roots, kept in their published form).
    """
    total, area = length + width, length * width
    r1 = (total + (total**2 - 4 * area * (1 - min_overlap) / (1 + min_overlap)).sqrt()) / 2
    r2 = (2 * total + (4 * total**2 - 16 * (1 - min_overlap) * area).sqrt()) / 2
    b3 = -2 * min_overlap * total
    r3 = (b3 + (b3**2 - 16 * min_overlap * (min_overlap - 1) * area).sqrt()) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def _splat_gaussians(
    heatmap: torch.Tensor,
    channel: torch.Tensor,
    row: torch.Tensor,
    col: torch.Tensor,
    radius: torch.Tensor,
) -> None:
    """Max-merge a gaussian (σ = (2r + 1) / 6, square support of radius r) per centre into
    heatmap [B·K, H, W] in place; channel, row, col, radius are int64 [N]."""
    if radius.numel() == 0:
        return
    _, height, width = heatmap.shape
    reach = int(radius.max())
    steps = torch.arange(-reach, reach + 1, device=heatmap.device)
    dy, dx = (d.reshape(1, -1) for d in torch.meshgrid(steps, steps, indexing="ij"))
    r = radius[:, None]
    sigma = (2 * r + 1).float() / 6
    values = torch.exp(-(dx**2 + dy**2).float() / (2 * sigma**2))
    rows, cols = row[:, None] + dy, col[:, None] + dx
    keep = (dx.abs() <= r) & (dy.abs() <= r)
    keep &= (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    flat = (channel[:, None] * height + rows) * width + cols
    heatmap.view(-1).scatter_reduce_(0, flat[keep], values[keep], "amax")


def _assign_slots(
    batch: torch.Tensor, inside: torch.Tensor, batch_size: int, max_objects: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Object slots for boxes of batch entry ``batch`` [N] (sorted) that lie ``inside`` [N] the map:
    (indices of the kept boxes [n], their slots [n], outside [B], overflow [B] counts)."""
    candidates = inside.nonzero().squeeze(1)
    counts = torch.bincount(batch[candidates], minlength=batch_size)
    starts = counts.cumsum(0) - counts
    rank = torch.arange(candidates.numel(), device=batch.device) - starts[batch[candidates]]
    kept = rank < max_objects
    outside = torch.bincount(batch[~inside], minlength=batch_size)
    overflow = counts - torch.bincount(batch[candidates[kept]], minlength=batch_size)
    return candidates[kept], rank[kept], outside, overflow


def _regression_targets(boxes: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """[n, 8] (off x, off y, z, log dx, log dy, log dz, sin 2θ, cos 2θ) for boxes [n, 7] and
    offsets [n, 2]."""
    twice = 2 * boxes[:, 6:7]
    return torch.cat([offset, boxes[:, 2:3], boxes[:, 3:6].log(), twice.sin(), twice.cos()], dim=1)


def box_axis(sin_twice: torch.Tensor, cos_twice: torch.Tensor) -> torch.Tensor:
    """The axis angle in (−π/2, π/2] whose double has this (sin, cos): a yaw modulo π."""
    return torch.atan2(sin_twice, cos_twice) / 2


def yaw_direction(yaw: torch.Tensor) -> torch.Tensor:
    """1.0 where ``yaw`` points against its axis angle (yaw ≡ axis + π), else 0.0."""
    axis = box_axis((2 * yaw).sin(), (2 * yaw).cos())
    return (torch.cos(yaw - axis) < 0).float()


def heading(axis: torch.Tensor, direction_logit: torch.Tensor) -> torch.Tensor:
    """Yaw in [−π, π) from the axis angle and the direction logit (> 0: axis + π)."""
    yaw = axis + math.pi * (direction_logit > 0)
    return torch.remainder(yaw + math.pi, 2 * math.pi) - math.pi


def _check_boxes(boxes: list[torch.Tensor], labels: list[torch.Tensor], num_classes: int) -> None:
    """ValueError for mismatched shapes, non-positive sizes or labels outside [0, num_classes)."""
    if len(boxes) != len(labels):
        raise ValueError(f"{len(boxes)} box tensors but {len(labels)} label tensors")
    for b, (box, label) in enumerate(zip(boxes, labels, strict=True)):
        if box.ndim != 2 or box.shape[1] != BOX_DIM or label.shape != (box.shape[0],):
            raise ValueError(f"item {b}: boxes must be [M, 7] and labels [M]")
        if bool((box[:, 3:6] <= 0).any()):
            raise ValueError(f"item {b}: box sizes must be positive")
        if bool(((label < 0) | (label >= num_classes)).any()):
            raise ValueError(f"item {b}: labels must lie in [0, {num_classes})")


def build_targets(
    boxes: list[torch.Tensor],
    labels: list[torch.Tensor],
    grid: VoxelGrid,
    stride: int,
    out_shape: tuple[int, int],
    gaussian_overlap: float = 0.1,
    min_radius: int = 2,
    max_objects: int = 128,
    num_classes: int = len(CLASSES),
) -> CenterTargets:
    """CenterPoint targets for boxes [M, 7] and labels [M] per batch item on an H × W map whose
    cells are voxel_size × stride, origin at point_range's (x0, y0); H runs along y, W along x."""
    _check_boxes(boxes, labels, num_classes)
    batch_size, (height, width) = len(boxes), out_shape
    device = boxes[0].device if boxes else torch.device("cpu")
    all_boxes = torch.cat([b.float() for b in boxes]) if boxes else torch.zeros(0, BOX_DIM)
    all_labels = torch.cat(list(labels)) if labels else torch.zeros(0, dtype=torch.long)
    batch = torch.repeat_interleave(
        torch.tensor([len(b) for b in boxes], dtype=torch.long, device=device)
    )
    cell = grid.size(device)[:2] * stride
    col_row = (all_boxes[:, :2] - grid.lower(device)[:2]) / cell  # centres in cells
    cell_index = col_row.floor().long()
    inside = (cell_index >= 0).all(1) & (cell_index[:, 0] < width) & (cell_index[:, 1] < height)
    select, slot, outside, overflow = _assign_slots(batch, inside, batch_size, max_objects)
    b, box, (col, row) = batch[select], all_boxes[select], cell_index[select].T

    heatmap = torch.zeros(batch_size * num_classes, height, width, device=device)
    size_cells = box[:, 3:5] / cell
    radius = gaussian_radius(size_cells[:, 0], size_cells[:, 1], gaussian_overlap)
    radius = radius.long().clamp(min=min_radius)
    _splat_gaussians(heatmap, b * num_classes + all_labels[select], row, col, radius)

    regression = torch.zeros(batch_size, max_objects, 8, device=device)
    regression[b, slot] = _regression_targets(box, col_row[select] - cell_index[select])
    direction = torch.zeros(batch_size, max_objects, device=device)
    direction[b, slot] = yaw_direction(box[:, 6])
    index = torch.zeros(batch_size, max_objects, dtype=torch.long, device=device)
    index[b, slot] = row * width + col
    mask = torch.zeros(batch_size, max_objects, dtype=torch.bool, device=device)
    mask[b, slot] = True
    return CenterTargets(
        heatmap.view(batch_size, num_classes, height, width),
        index,
        mask,
        regression,
        direction,
        outside,
        overflow,
    )


# --- loss ------------------------------------------------------------------------------------


def _focal_loss(
    logits: torch.Tensor, target: torch.Tensor, normaliser: torch.Tensor
) -> torch.Tensor:
    """CornerNet's penalty-reduced focal loss (α = 2, β = 4) summed and divided by ``normaliser``."""
    # float32: under bf16/fp16 autocast 1 − 1e-4 would round to 1 and log(1 − p) to −inf
    prob = logits.float().sigmoid().clamp(PROBABILITY_CLAMP, 1 - PROBABILITY_CLAMP)
    positive = target.eq(1).float()
    pos = prob.log() * (1 - prob) ** 2 * positive
    neg = (1 - prob).log() * prob**2 * (1 - target) ** 4 * (1 - positive)
    return -(pos + neg).sum() / normaliser


def _at_objects(maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Values of maps [B, C, H, W] at the object slots' cells index [B, max_objects]:
    [B, max_objects, C] in float32."""
    flat = maps.float().flatten(2)
    return flat.gather(2, index[:, None, :].expand(-1, flat.shape[1], -1)).transpose(1, 2)


def _box_loss(
    preds: dict[str, torch.Tensor],
    targets: CenterTargets,
    code_weights: torch.Tensor,
    normaliser: torch.Tensor,
) -> torch.Tensor:
    """Weighted L1 of the 8 regression channels at the object slots' cells, over ``normaliser``."""
    gathered = _at_objects(regression_maps(preds), targets.index)  # [B, max_objects, 8]
    error = (gathered - targets.regression).abs() * targets.mask[..., None]
    return (error * code_weights).sum() / normaliser


def _direction_loss(
    preds: dict[str, torch.Tensor], targets: CenterTargets, normaliser: torch.Tensor
) -> torch.Tensor:
    """Binary cross-entropy of the direction logits at the object slots' cells, over
    ``normaliser``."""
    logits = _at_objects(preds["direction"], targets.index)[..., 0]  # [B, max_objects]
    error = F.binary_cross_entropy_with_logits(logits, targets.direction, reduction="none")
    return (error * targets.mask).sum() / normaliser


def center_loss(
    preds: dict[str, torch.Tensor],
    targets: CenterTargets,
    code_weights: Sequence[float] = (1, 1, 1, 1, 1, 1, 1, 1),
    box_weight: float = 0.25,
    direction_weight: float = 0.2,
) -> dict[str, torch.Tensor]:
    """{"heatmap": focal loss, "box": L1 loss, "direction": cross-entropy, "loss": heatmap +
    box_weight · box + direction_weight · direction}, each normalised by the number of objects
    (at least 1)."""
    if len(code_weights) != 8:
        raise ValueError(f"code_weights needs 8 entries, got {len(code_weights)}")
    num_objects = targets.mask.sum().clamp(min=1).float()
    heatmap = _focal_loss(preds["heatmap"], targets.heatmap, num_objects)
    weights = torch.tensor(code_weights, dtype=heatmap.dtype, device=heatmap.device)
    box = _box_loss(preds, targets, weights, num_objects)
    direction = _direction_loss(preds, targets, num_objects)
    loss = heatmap + box_weight * box + direction_weight * direction
    return {"heatmap": heatmap, "box": box, "direction": direction, "loss": loss}


# --- decoding --------------------------------------------------------------------------------


@torch.no_grad()
def decode(
    preds: dict[str, torch.Tensor],
    grid: VoxelGrid,
    stride: int,
    max_detections: int = 100,
    score_threshold: float = 0.1,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per batch item (boxes [k, 7] in metres, scores [k], labels [k]) from the heatmap's local
    maxima (3×3), the top ``max_detections`` over classes × cells above ``score_threshold``.
    No NMS: the caller applies rotated NMS."""
    scores_map = preds["heatmap"].float().sigmoid()
    batch_size, _, height, width = scores_map.shape
    peaks = scores_map == F.max_pool2d(scores_map, 3, stride=1, padding=1)
    flat_scores = (scores_map * peaks).flatten(1)
    k = min(max_detections, flat_scores.shape[1])
    scores, flat = flat_scores.topk(k, dim=1)  # [B, k]
    labels, cells = flat // (height * width), flat % (height * width)
    reg = _at_objects(regression_maps(preds), cells)  # [B, k, 8]
    direction_logit = _at_objects(preds["direction"], cells)[..., 0]
    cell_size = grid.size(scores.device)[:2] * stride
    col_row = torch.stack([cells % width, cells // width], dim=-1).float()
    xy = (col_row + reg[..., 0:2]) * cell_size + grid.lower(scores.device)[:2]
    yaw = heading(box_axis(reg[..., 6], reg[..., 7]), direction_logit)
    boxes = torch.cat([xy, reg[..., 2:3], reg[..., 3:6].exp(), yaw[..., None]], dim=-1)
    keep = scores >= score_threshold
    return [(boxes[i][keep[i]], scores[i][keep[i]], labels[i][keep[i]]) for i in range(batch_size)]
