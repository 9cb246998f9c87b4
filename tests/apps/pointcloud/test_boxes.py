"""Rotated box geometry against shapely polygons built independently of the code under test."""

from __future__ import annotations

import math

import pytest
import torch
from shapely import affinity
from shapely.geometry import Polygon
from shapely.geometry import box as shapely_rectangle

from apps.pointcloud.boxes import (
    box_corners_3d,
    box_corners_bev,
    boxes_in_range,
    iou_3d,
    iou_bev,
    rotated_nms,
)


def footprint(box: list[float]) -> Polygon:
    """The box seen from above, as shapely builds it: rectangle → rotate → translate."""
    x, y, _, dx, dy, _, yaw = box
    rectangle = shapely_rectangle(-dx / 2, -dy / 2, dx / 2, dy / 2)
    return affinity.translate(
        affinity.rotate(rectangle, yaw, origin=(0, 0), use_radians=True), x, y
    )


def reference_iou(a: list[float], b: list[float], three_d: bool) -> float:
    """IoU of two boxes from shapely areas (times the z overlap and heights for 3D)."""
    first, second = footprint(a), footprint(b)
    overlap, size_a, size_b = first.intersection(second).area, first.area, second.area
    if three_d:
        low = max(a[2] - a[5] / 2, b[2] - b[5] / 2)
        high = min(a[2] + a[5] / 2, b[2] + b[5] / 2)
        overlap *= max(high - low, 0.0)
        size_a, size_b = size_a * a[5], size_b * b[5]
    return overlap / (size_a + size_b - overlap)


def random_boxes(n: int, gen: torch.Generator, spread: float = 20.0) -> torch.Tensor:
    """``[n, 7]`` boxes with centres in a ``spread``-metre square, sizes 0.3–5 m, any heading."""
    centre = (torch.rand(n, 3, generator=gen) - 0.5) * torch.tensor([spread, spread, 2.0])
    size = 0.3 + 4.7 * torch.rand(n, 3, generator=gen)
    yaw = (torch.rand(n, 1, generator=gen) - 0.5) * 4 * math.pi
    return torch.cat((centre, size, yaw), dim=1)


def neighbours(a: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Boxes near each of ``a [n, 7]``: shifted by up to a box size, resized, mostly turned a bit;
    every fourth one keeps the heading exactly, so edges run parallel."""
    shift = (torch.rand(len(a), 3, generator=gen) - 0.5) * a[:, 3:6]
    scale = 0.6 + 0.8 * torch.rand(len(a), 3, generator=gen)
    turn = (torch.rand(len(a), generator=gen) - 0.5) * math.pi
    turn[::4] = 0.0
    b = a.clone()
    b[:, :3] += shift
    b[:, 3:6] *= scale
    b[:, 6] += turn
    return b


@pytest.mark.parametrize("three_d", [False, True])
def test_iou_matches_shapely_on_random_pairs(gen, three_d):
    near = random_boxes(300, gen, spread=4.0)
    a = torch.cat((random_boxes(100, gen), near))
    b = torch.cat((random_boxes(100, gen), neighbours(near, gen)))
    iou = (iou_3d if three_d else iou_bev)(a, b)
    assert iou.dtype == torch.float32 and iou.shape == (400, 400)
    a_list, b_list = a.tolist(), b.tolist()
    paired = torch.tensor(
        [reference_iou(p, q, three_d) for p, q in zip(a_list, b_list, strict=True)]
    )
    assert (paired > 0.05).sum() > 200, "too few overlapping pairs to test clipping"
    torch.testing.assert_close(iou.diagonal(), paired.float(), atol=1e-5, rtol=0)
    block = torch.tensor(
        [[reference_iou(p, q, three_d) for q in b_list[80:130]] for p in a_list[80:130]]
    )
    torch.testing.assert_close(iou[80:130, 80:130], block.float(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("iou", [iou_bev, iou_3d])
def test_hand_cases(iou):
    square = torch.tensor([[3.0, -2.0, 0.5, 2.0, 2.0, 1.0, 0.3]])
    car = torch.tensor([[10.0, 5.0, -1.0, 4.0, 1.8, 1.5, -0.7]])
    car_turned = car.clone()
    car_turned[0, 3:5] = car[0, [4, 3]]
    car_turned[0, 6] += math.pi / 2
    shifted = torch.tensor([[4.0, -2.0, 0.5, 2.0, 2.0, 1.0, 0.0]])
    inner = torch.tensor([[10.1, 5.05, -1.0, 2.0, 0.9, 1.5, -0.7]])
    touching = torch.tensor([[5.0, -2.0, 0.5, 2.0, 2.0, 1.0, 0.0]])
    axis_square = torch.tensor([[3.0, -2.0, 0.5, 2.0, 2.0, 1.0, 0.0]])

    def one(a: torch.Tensor, b: torch.Tensor) -> float:
        return iou(a, b).item()

    assert one(square, square) == pytest.approx(1.0, abs=1e-6)
    assert one(car, car) == pytest.approx(1.0, abs=1e-6)
    assert one(square, square + torch.tensor([[0, 0, 0, 0, 0, 0, math.pi / 2]])) == pytest.approx(
        1.0, abs=1e-5
    )
    assert one(car, car_turned) == pytest.approx(1.0, abs=1e-5)
    assert one(axis_square, shifted) == pytest.approx(1 / 3, abs=1e-6)
    assert one(car, inner) == pytest.approx(0.25, abs=1e-6)
    assert one(axis_square, touching) == 0.0
    assert one(square, car) == 0.0


def test_iou_3d_separates_boxes_stacked_in_z():
    low = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0, 1.0, 0.4]])
    assert iou_bev(low, low + torch.tensor([[0, 0, 1.0, 0, 0, 0, 0]])).item() == pytest.approx(1.0)
    assert iou_3d(low, low + torch.tensor([[0, 0, 1.0, 0, 0, 0, 0]])).item() == 0.0
    assert iou_3d(low, low + torch.tensor([[0, 0, 0.5, 0, 0, 0, 0]])).item() == pytest.approx(1 / 3)


@pytest.mark.parametrize("iou", [iou_bev, iou_3d])
def test_empty_inputs(gen, iou):
    boxes = random_boxes(3, gen)
    assert iou(boxes[:0], boxes).shape == (0, 3)
    assert iou(boxes, boxes[:0]).shape == (3, 0)
    assert iou(boxes[:0], boxes[:0]).shape == (0, 0)


def test_corners_form_the_box(gen):
    boxes = random_boxes(50, gen)
    corners = box_corners_bev(boxes).double()
    sides = (corners.roll(-1, dims=1) - corners).norm(dim=-1)
    dx, dy = boxes[:, 3:4].double(), boxes[:, 4:5].double()
    torch.testing.assert_close(sides, torch.cat((dy, dx, dy, dx), dim=1), rtol=1e-5, atol=1e-5)
    x, y = corners[..., 0], corners[..., 1]
    signed_area = 0.5 * (x * y.roll(-1, dims=1) - x.roll(-1, dims=1) * y).sum(dim=1)
    torch.testing.assert_close(signed_area, (dx * dy)[:, 0], rtol=1e-5, atol=1e-5)
    front = corners[:, :2].mean(dim=1) - boxes[:, :2].double()
    yaw = boxes[:, 6].double()
    heading = torch.stack((yaw.cos(), yaw.sin()), dim=1) * dx / 2
    torch.testing.assert_close(front, heading, rtol=1e-5, atol=1e-5)
    for box, ring in zip(boxes.tolist(), corners.tolist(), strict=True):
        mismatch = Polygon(ring).symmetric_difference(footprint(box)).area
        assert mismatch == pytest.approx(0.0, abs=1e-4)


def test_corners_3d_stack_the_footprint(gen):
    boxes = random_boxes(20, gen)
    corners = box_corners_3d(boxes)
    assert corners.shape == (20, 8, 3)
    torch.testing.assert_close(corners[:, :4, :2], box_corners_bev(boxes))
    torch.testing.assert_close(corners[:, 4:, :2], box_corners_bev(boxes))
    bottom, top = boxes[:, 2] - boxes[:, 5] / 2, boxes[:, 2] + boxes[:, 5] / 2
    torch.testing.assert_close(corners[:, :4, 2], bottom[:, None].expand(-1, 4))
    torch.testing.assert_close(corners[:, 4:, 2], top[:, None].expand(-1, 4))


def greedy_nms_reference(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> list[int]:
    """Textbook greedy NMS with shapely IoU, one box at a time."""
    listed = boxes.tolist()
    order = sorted(range(len(listed)), key=lambda i: -scores[i].item())
    kept: list[int] = []
    for i in order:
        if all(reference_iou(listed[i], listed[j], three_d=False) <= threshold for j in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("threshold", [0.01, 0.2, 0.5])
def test_nms_matches_greedy_reference(gen, threshold):
    centres = random_boxes(8, gen, spread=30.0)
    cluster = centres.repeat_interleave(10, dim=0)
    boxes = neighbours(cluster, gen)
    scores = torch.rand(len(boxes), generator=gen)
    keep = rotated_nms(boxes, scores, threshold)
    expected = greedy_nms_reference(boxes, scores, threshold)
    assert keep.dtype == torch.int64
    assert keep.tolist() == expected
    assert 8 <= len(expected) < len(boxes)
    assert rotated_nms(boxes, scores, threshold, max_boxes=3).tolist() == expected[:3]


def test_nms_of_nothing():
    assert rotated_nms(torch.zeros(0, 7), torch.zeros(0), 0.5).shape == (0,)


def test_boxes_in_range():
    boxes = torch.zeros(5, 7)
    boxes[:, 0] = torch.tensor([0.0, 51.2, 10.0, -0.1, 20.0])
    boxes[:, 1] = torch.tensor([0.0, 0.0, 25.6, 5.0, -25.6])
    inside = boxes_in_range(boxes, (0.0, -25.6, -3.0, 51.2, 25.6, 1.0))
    assert inside.tolist() == [True, False, False, False, True]
