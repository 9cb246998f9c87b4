"""CenterPoint head: targets match a brute-force gaussian splat, decoding the targets gives the boxes
back, the focal and box losses match direct formulas, and a head learns a fixed scene."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from apps.pointcloud.frames import VoxelGrid
from apps.pointcloud.head import (
    CenterHead,
    CenterTargets,
    box_axis,
    build_targets,
    center_loss,
    decode,
    gaussian_radius,
    heading,
)

GRID = VoxelGrid(point_range=(0.0, -12.8, -3.0, 25.6, 12.8, 1.0), voxel_size=(0.32, 0.32, 4.0))
STRIDE = 2
OUT_SHAPE = (40, 40)  # 25.6 m / (0.32 m · 2)
CELL = 0.32 * STRIDE


def random_scene(gen: torch.Generator, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """boxes [count, 7] centred in distinct cells at least 3 apart, labels [count] in {0, 1, 2}."""
    lattice = torch.randperm((OUT_SHAPE[0] // 3) * (OUT_SHAPE[1] // 3), generator=gen)[:count]
    col = (lattice % (OUT_SHAPE[1] // 3)) * 3 + torch.rand(count, generator=gen)
    row = (lattice // (OUT_SHAPE[1] // 3)) * 3 + torch.rand(count, generator=gen)
    x, y = col * CELL + GRID.point_range[0], row * CELL + GRID.point_range[1]
    z = torch.rand(count, generator=gen) * 2 - 2
    size = torch.rand(count, 3, generator=gen) * torch.tensor([4.0, 1.5, 1.5]) + 0.4
    yaw = torch.rand(count, generator=gen) * 2 * math.pi - math.pi
    boxes = torch.cat([torch.stack([x, y, z], 1), size, yaw[:, None]], 1)
    return boxes, torch.randint(0, 3, (count,), generator=gen)


def cornernet_radius(height: float, width: float, overlap: float) -> float:
    """CornerNet's three quadratic roots, written out as in its paper's code."""
    a1, b1, c1 = 1, height + width, width * height * (1 - overlap) / (1 + overlap)
    a2, b2, c2 = 4, 2 * (height + width), (1 - overlap) * width * height
    a3, b3, c3 = 4 * overlap, -2 * overlap * (height + width), (overlap - 1) * width * height
    roots = [
        (b + math.sqrt(b * b - 4 * a * c)) / 2
        for a, b, c in ((a1, b1, c1), (a2, b2, c2), (a3, b3, c3))
    ]
    return min(roots)


def brute_force_heatmap(
    boxes: torch.Tensor, labels: torch.Tensor, overlap: float, min_radius: int
) -> torch.Tensor:
    """[3, H, W]: per box a gaussian over every cell within its radius, max-merged."""
    height, width = OUT_SHAPE
    heatmap = torch.zeros(3, height, width, dtype=torch.float64)
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    for box, label in zip(boxes.tolist(), labels.tolist(), strict=True):
        col = math.floor((box[0] - GRID.point_range[0]) / CELL)
        row = math.floor((box[1] - GRID.point_range[1]) / CELL)
        if not (0 <= col < width and 0 <= row < height):
            continue
        radius = max(min_radius, int(cornernet_radius(box[3] / CELL, box[4] / CELL, overlap)))
        sigma = (2 * radius + 1) / 6
        dist2 = (rows - row) ** 2 + (cols - col) ** 2
        near = ((rows - row).abs() <= radius) & ((cols - col).abs() <= radius)
        gauss = torch.exp(-dist2 / (2 * sigma**2)) * near
        heatmap[label] = torch.maximum(heatmap[label], gauss)
    return heatmap


def perfect_predictions(targets: CenterTargets) -> dict[str, torch.Tensor]:
    """Maps a perfect head would output: heatmap logits of the clamped targets, and each slot's
    regression and a confident direction logit written at its centre cell."""
    batch, _, height, width = targets.heatmap.shape
    reg = torch.zeros(batch, 8, height * width)
    direction = torch.zeros(batch, 1, height * width)
    for b in range(batch):
        slots = targets.mask[b].nonzero().squeeze(1)
        reg[b][:, targets.index[b, slots]] = targets.regression[b, slots].T
        direction[b, 0, targets.index[b, slots]] = targets.direction[b, slots] * 40 - 20
    reg = reg.view(batch, 8, height, width)
    logits = torch.logit(targets.heatmap.clamp(1e-4, 1 - 1e-4))
    return {
        "heatmap": logits,
        "offset": reg[:, 0:2],
        "z": reg[:, 2:3],
        "size": reg[:, 3:6],
        "rot": reg[:, 6:8],
        "direction": direction.view(batch, 1, height, width),
    }


def test_gaussian_radius_matches_cornernet() -> None:
    gen = torch.Generator().manual_seed(0)
    length, width = torch.rand(2, 50, generator=gen, dtype=torch.float64) * 20 + 0.5
    for overlap in (0.1, 0.5, 0.7):
        got = gaussian_radius(length, width, overlap)
        expected = [
            cornernet_radius(h, w, overlap)
            for h, w in zip(length.tolist(), width.tolist(), strict=True)
        ]
        torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


def test_heatmap_matches_brute_force_splat() -> None:
    gen = torch.Generator().manual_seed(1)
    scenes = [random_scene(gen, 12), random_scene(gen, 7)]
    targets = build_targets([s[0] for s in scenes], [s[1] for s in scenes], GRID, STRIDE, OUT_SHAPE)
    for b, (boxes, labels) in enumerate(scenes):
        expected = brute_force_heatmap(boxes, labels, 0.1, 2).float()
        torch.testing.assert_close(targets.heatmap[b], expected, atol=1e-6, rtol=1e-5)
        cells = targets.index[b][targets.mask[b]]
        peaks = targets.heatmap[b].flatten(1)[labels, cells]
        assert torch.equal(peaks, torch.ones(len(boxes)))


def test_radius_never_below_min_radius() -> None:
    boxes = torch.tensor([[10.0, 0.0, -1.0, 0.1, 0.1, 1.0, 0.0]])  # far smaller than a cell
    targets = build_targets([boxes], [torch.tensor([1])], GRID, STRIDE, OUT_SHAPE, min_radius=3)
    row, col = divmod(int(targets.index[0, 0]), OUT_SHAPE[1])
    along_row = targets.heatmap[0, 1, row] > 0
    assert along_row.nonzero().squeeze(1).tolist() == list(range(col - 3, col + 4))


def test_outside_and_overflow_boxes_are_counted_and_skipped() -> None:
    gen = torch.Generator().manual_seed(2)
    boxes, labels = random_scene(gen, 6)
    boxes[1, 0] = GRID.point_range[0] - 0.1  # behind the map
    boxes[4, 1] = GRID.point_range[4] + 0.5  # left of the map
    targets = build_targets(
        [boxes, boxes[:3]], [labels, labels[:3]], GRID, STRIDE, OUT_SHAPE, max_objects=3
    )
    assert targets.outside.tolist() == [2, 1]
    assert targets.overflow.tolist() == [1, 0]
    assert targets.mask.sum(1).tolist() == [3, 2]
    kept = boxes[[0, 2, 3]]
    torch.testing.assert_close(targets.regression[0, :, 2], kept[:, 2])  # z in box order
    assert int((targets.heatmap[0] == 1).sum()) == 3  # neither skipped box left a peak


def test_targets_decode_back_to_the_boxes() -> None:
    gen = torch.Generator().manual_seed(3)
    scenes = [random_scene(gen, 20), random_scene(gen, 1), random_scene(gen, 0)]
    targets = build_targets([s[0] for s in scenes], [s[1] for s in scenes], GRID, STRIDE, OUT_SHAPE)
    detections = decode(perfect_predictions(targets), GRID, STRIDE)
    for (boxes, labels), (found, scores, found_labels) in zip(scenes, detections, strict=True):
        assert len(found) == len(boxes)
        assert bool((scores > 0.99).all())
        if not len(boxes):
            continue
        match = torch.cdist(boxes[:, :2], found[:, :2]).argmin(1)
        assert sorted(match.tolist()) == list(range(len(boxes)))
        found, found_labels = found[match], found_labels[match]
        torch.testing.assert_close(found[:, :6], boxes[:, :6], atol=1e-4, rtol=0)
        assert bool(((found[:, 6] >= -math.pi) & (found[:, 6] < math.pi)).all())
        yaw_error = torch.remainder(found[:, 6] - boxes[:, 6] + math.pi, 2 * math.pi) - math.pi
        assert yaw_error.abs().max() < 1e-4
        assert torch.equal(found_labels, labels)


def test_decode_keeps_only_local_maxima_above_threshold() -> None:
    heatmap = torch.full((1, 2, 8, 8), -10.0)
    heatmap[0, 0, 2, 2], heatmap[0, 0, 2, 3] = 3.0, 2.0  # neighbour of a stronger peak: dropped
    heatmap[0, 1, 5, 6] = 0.0  # probability 0.5
    heatmap[0, 1, 0, 7] = -3.0  # probability 0.047 < 0.1
    preds = {
        "heatmap": heatmap,
        "offset": torch.zeros(1, 2, 8, 8),
        "z": torch.zeros(1, 1, 8, 8),
        "size": torch.zeros(1, 3, 8, 8),
        "rot": torch.zeros(1, 2, 8, 8),
        "direction": torch.zeros(1, 1, 8, 8),
    }
    preds["rot"][:, 1] = 1.0
    [(boxes, scores, labels)] = decode(preds, GRID, STRIDE)
    assert labels.tolist() == [0, 1]
    torch.testing.assert_close(scores, torch.sigmoid(torch.tensor([3.0, 0.0])))
    x0, y0 = GRID.point_range[:2]
    torch.testing.assert_close(
        boxes[:, :2], torch.tensor([[x0 + 2 * CELL, y0 + 2 * CELL], [x0 + 6 * CELL, y0 + 5 * CELL]])
    )


def test_rotation_targets_ignore_a_half_turn_and_the_direction_bit_restores_it() -> None:
    """A box turned by π is the same box: the regressed (sin 2θ, cos 2θ) agree, the direction
    targets differ, and axis + direction give back every yaw."""
    yaw = (torch.rand(500, generator=torch.Generator().manual_seed(11)) * 2 - 1) * math.pi
    turned = torch.remainder(yaw, 2 * math.pi) - math.pi  # yaw + π wrapped to [−π, π)
    targets = [
        build_targets(
            [_boxes_with_yaw(y)],
            [torch.zeros(len(y), dtype=torch.long)],
            GRID,
            STRIDE,
            OUT_SHAPE,
            max_objects=500,
        )
        for y in (yaw, turned)
    ]
    torch.testing.assert_close(targets[0].regression, targets[1].regression, atol=1e-5, rtol=0)
    assert torch.equal(targets[0].direction + targets[1].direction, torch.ones(1, 500))
    for y, t in zip((yaw, turned), targets, strict=True):
        axis = box_axis(t.regression[0, :, 6], t.regression[0, :, 7])
        restored = heading(axis, t.direction[0] * 2 - 1)
        error = torch.remainder(restored - y + math.pi, 2 * math.pi) - math.pi
        assert error.abs().max() < 1e-4


def _boxes_with_yaw(yaw: torch.Tensor) -> torch.Tensor:
    """Cars [n, 7] at one place with the given yaws (the slots keep their order)."""
    boxes = torch.tensor([[10.0, 0.0, -1.0, 3.9, 1.6, 1.5, 0.0]]).repeat(len(yaw), 1)
    boxes[:, 6] = yaw
    return boxes


def test_direction_loss_is_cross_entropy_at_centres() -> None:
    gen = torch.Generator().manual_seed(12)
    boxes, labels = random_scene(gen, 5)
    targets = build_targets([boxes], [labels], GRID, STRIDE, OUT_SHAPE)
    preds = perfect_predictions(targets)
    preds["direction"] = torch.randn(1, 1, *OUT_SHAPE, generator=gen)
    expected = 0.0
    for slot in targets.mask[0].nonzero().squeeze(1).tolist():
        logit = float(preds["direction"].flatten()[targets.index[0, slot]])
        p = 1 / (1 + math.exp(-logit))
        expected -= math.log(p) if targets.direction[0, slot] == 1 else math.log(1 - p)
    got = center_loss(preds, targets)["direction"].item()
    assert got == pytest.approx(expected / len(boxes), rel=1e-5)


def direct_focal_loss(logits: np.ndarray, target: np.ndarray, objects: int) -> float:
    """CornerNet's penalty-reduced focal loss, element by element in float64."""
    p = np.clip(1 / (1 + np.exp(-logits)), 1e-4, 1 - 1e-4)
    total = 0.0
    for prob, gt in zip(p.ravel(), target.ravel(), strict=True):
        if gt == 1:
            total += (1 - prob) ** 2 * math.log(prob)
        else:
            total += (1 - gt) ** 4 * prob**2 * math.log(1 - prob)
    return -total / max(objects, 1)


def test_focal_loss_matches_direct_formula() -> None:
    gen = torch.Generator().manual_seed(4)
    scenes = [random_scene(gen, 5), random_scene(gen, 3)]
    targets = build_targets([s[0] for s in scenes], [s[1] for s in scenes], GRID, STRIDE, OUT_SHAPE)
    preds = perfect_predictions(targets)
    preds["heatmap"] = torch.randn(targets.heatmap.shape, generator=gen) * 3
    got = center_loss(preds, targets)["heatmap"]
    expected = direct_focal_loss(preds["heatmap"].numpy(), targets.heatmap.numpy(), 8)
    assert got.item() == pytest.approx(expected, rel=1e-4)


def test_focal_loss_vanishes_for_a_perfect_peak_map() -> None:
    gen = torch.Generator().manual_seed(5)
    boxes, labels = random_scene(gen, 10)
    targets = build_targets([boxes], [labels], GRID, STRIDE, OUT_SHAPE)
    preds = perfect_predictions(targets)
    preds["heatmap"] = torch.where(targets.heatmap == 1, 20.0, -20.0)
    losses = center_loss(preds, targets)
    assert losses["heatmap"].item() < 1e-6
    assert losses["box"].item() < 1e-6
    assert losses["direction"].item() < 1e-6
    assert center_loss(perfect_predictions(targets), targets)["heatmap"].item() > 0.01


def test_box_loss_is_weighted_l1_at_centres_and_ignores_masked_slots() -> None:
    gen = torch.Generator().manual_seed(6)
    scenes = [random_scene(gen, 4), random_scene(gen, 2)]
    targets = build_targets(
        [s[0] for s in scenes], [s[1] for s in scenes], GRID, STRIDE, OUT_SHAPE, max_objects=8
    )
    shape = (2, 8, *OUT_SHAPE)
    reg = torch.randn(shape, generator=gen)
    preds = {
        "heatmap": torch.zeros(2, 3, *OUT_SHAPE),
        "offset": reg[:, 0:2],
        "z": reg[:, 2:3],
        "size": reg[:, 3:6],
        "rot": reg[:, 6:8],
        "direction": torch.randn(2, 1, *OUT_SHAPE, generator=gen),
    }
    weights = torch.rand(8, generator=gen).tolist()
    expected = 0.0
    for b in range(2):
        for slot in targets.mask[b].nonzero().squeeze(1).tolist():
            row, col = divmod(int(targets.index[b, slot]), OUT_SHAPE[1])
            for c in range(8):
                error = abs(float(reg[b, c, row, col] - targets.regression[b, slot, c]))
                expected += weights[c] * error
    expected /= 6
    losses = center_loss(preds, targets, code_weights=weights)
    assert losses["box"].item() == pytest.approx(expected, rel=1e-5)
    total = losses["heatmap"] + 0.25 * expected + 0.2 * losses["direction"]
    assert losses["loss"].item() == pytest.approx(total.item(), rel=1e-5)

    free = ~targets.mask
    targets.regression[free] = torch.randn(int(free.sum()), 8, generator=gen) * 100
    targets.index[free] = torch.randint(0, 1600, (int(free.sum()),), generator=gen)
    assert center_loss(preds, targets, code_weights=weights)["box"].item() == pytest.approx(
        expected, rel=1e-5
    )


def test_head_outputs_and_prior() -> None:
    head = CenterHead(16, num_classes=3, head_channels=8)
    preds = head(torch.randn(2, 16, 9, 11, generator=torch.Generator().manual_seed(7)))
    shapes = {name: tuple(t.shape) for name, t in preds.items()}
    assert shapes == {
        "heatmap": (2, 3, 9, 11),
        "offset": (2, 2, 9, 11),
        "z": (2, 1, 9, 11),
        "size": (2, 3, 9, 11),
        "rot": (2, 2, 9, 11),
        "direction": (2, 1, 9, 11),
    }
    bias = head.branches["heatmap"][-1].bias
    torch.testing.assert_close(torch.sigmoid(bias), torch.full((3,), 0.1))


def test_head_learns_a_fixed_scene() -> None:
    torch.manual_seed(8)
    gen = torch.Generator().manual_seed(8)
    boxes, labels = random_scene(gen, 3)
    targets = build_targets([boxes], [labels], GRID, STRIDE, OUT_SHAPE)
    features = torch.randn(1, 16, *OUT_SHAPE, generator=gen)
    head = CenterHead(16, head_channels=16)
    optimiser = torch.optim.Adam(head.parameters(), lr=3e-3)
    first = None
    for _ in range(100):
        loss = center_loss(head(features), targets)["loss"]
        first = loss.item() if first is None else first
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() * 5 <= first


def test_losses_stay_finite_for_confident_low_precision_maps() -> None:
    """bf16 maps (autocast): a confident wrong peak must give a large finite loss, not inf/NaN."""
    gen = torch.Generator().manual_seed(9)
    boxes, labels = random_scene(gen, 4)
    targets = build_targets([boxes], [labels], GRID, STRIDE, OUT_SHAPE)
    preds = {name: t.bfloat16() for name, t in perfect_predictions(targets).items()}
    preds["heatmap"] = torch.where(targets.heatmap == 1, -20.0, 20.0).bfloat16()
    losses = center_loss(preds, targets)
    assert torch.isfinite(losses["loss"]) and losses["heatmap"].item() > 100
