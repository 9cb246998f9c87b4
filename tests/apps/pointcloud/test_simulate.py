"""The LiDAR simulator: a brute-force ray caster (face planes, one box at a time), shapely footprints
and the KITTI readers check the scenes and the files written."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from shapely import affinity
from shapely.geometry import Point
from shapely.geometry import box as shapely_rectangle

from apps.pointcloud.raycast import SENSOR_HEIGHT, Sensor, cast_rays
from apps.pointcloud.readers import read_image_set, read_kitti_frame
from apps.pointcloud.simulate import in_camera_view, simulate_frame, simulate_kitti

SMALL = Sensor(azimuth_steps=360)  # a quarter of the azimuth steps: fast, same geometry
SPLITS = {"train": 3, "val": 2}


def scene(index: int, seed: int = 7):
    return simulate_frame(np.random.default_rng([seed, index]), SMALL)


def to_box_frame(points: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Points ``[N, 3]`` in the frame of one box (centre at 0, heading along +x)."""
    shifted = points - box[:3]
    cos, sin = math.cos(box[6]), math.sin(box[6])
    return np.stack(
        [
            shifted[:, 0] * cos + shifted[:, 1] * sin,
            shifted[:, 1] * cos - shifted[:, 0] * sin,
            shifted[:, 2],
        ],
        -1,
    )


def inside(points: np.ndarray, box: np.ndarray, margin: float = 0.0) -> np.ndarray:
    return (np.abs(to_box_frame(points, box)) <= box[3:6] / 2 + margin).all(1)


def brute_force_cast(directions: np.ndarray, boxes: np.ndarray, slopes: np.ndarray):
    """Every face plane of every box, then the ground: the nearest distance and what it hit per ray
    (len(boxes) for the ground), and how many rays cross each box within 70 m."""
    best = np.full(len(directions), np.inf)
    hit = np.full(len(directions), len(boxes))
    crossing = np.zeros(len(boxes), dtype=np.int64)
    for index, box in enumerate(boxes):
        origin = to_box_frame(np.zeros((1, 3)), box)[0]
        direction = to_box_frame(directions, np.r_[0, 0, 0, box[3:]])
        half = box[3:6] / 2
        crosses = np.zeros(len(directions), dtype=bool)
        for axis in range(3):
            for sign in (-1, 1):
                with np.errstate(divide="ignore", invalid="ignore"):
                    t = (sign * half[axis] - origin[axis]) / direction[:, axis]
                    on_face = origin + t[:, None] * direction
                others = [a for a in range(3) if a != axis]
                within = (np.abs(on_face[:, others]) <= half[others] + 1e-9).all(1)
                reached = within & (t > 0) & (t <= 70.0)
                crosses |= reached
                closer = reached & (t < best)
                best[closer], hit[closer] = t[closer], index
        crossing[index] = crosses.sum()
    with np.errstate(divide="ignore"):
        t = -SENSOR_HEIGHT / (directions[:, 2] + directions[:, :2] @ slopes)
    nearer = (t > 0) & (t <= 70.0) & (t < best)
    best[nearer], hit[nearer] = t[nearer], len(boxes)
    return best, hit, crossing


def test_ray_casting_and_occlusion_match_brute_force():
    for index in range(2):
        frame = scene(index)
        boxes = np.concatenate([frame.boxes, frame.clutter]).astype(np.float64)
        distance, hit, crossing = cast_rays(SMALL, boxes, frame.slopes)
        expected, expected_hit, expected_crossing = brute_force_cast(
            SMALL.directions(), boxes, frame.slopes
        )
        np.testing.assert_allclose(distance, expected, rtol=1e-9)
        found = np.isfinite(expected)
        assert (hit[found] != expected_hit[found]).sum() <= 2  # ties at shared edges aside
        assert (hit[found] < len(boxes)).sum() > 1000
        assert np.abs(crossing - expected_crossing).max() <= 2
        objects = len(frame.boxes)
        seen = np.bincount(expected_hit[found], minlength=len(boxes) + 1)[:objects]
        blocked = 1 - seen / np.maximum(expected_crossing[:objects], 1)
        levels = [
            3 if crosses == 0 else 0 if share < 0.2 else 1 if share < 0.6 else 2
            for crosses, share in zip(expected_crossing[:objects], blocked, strict=True)
        ]
        assert frame.occlusion.tolist() == levels


def test_points_lie_on_boxes_or_the_ground():
    frame = scene(2)
    points = frame.points[:, :3].astype(np.float64)
    boxes = np.concatenate([frame.boxes, frame.clutter]).astype(np.float64)
    on_box = np.zeros(len(points), dtype=bool)
    for box in boxes:
        near = inside(points, box, margin=0.1)
        deep = inside(points, box, margin=-0.1)
        assert not deep.any(), "points lie on surfaces, not inside solids"
        on_box |= near
    ground = -SENSOR_HEIGHT - points[~on_box, :2] @ frame.slopes
    assert np.abs(points[~on_box, 2] - ground).max() < 0.1
    assert on_box.sum() > 500 and (~on_box).sum() > 5000
    assert ((frame.points[:, 3] >= 0) & (frame.points[:, 3] <= 1)).all()
    for box, level in zip(frame.boxes.astype(np.float64), frame.occlusion, strict=True):
        if level == 0:
            assert inside(points, box, margin=0.1).sum() >= 3, box


def footprint(box: np.ndarray):
    x, y, _, dx, dy, _, yaw = box.tolist()
    rectangle = shapely_rectangle(-dx / 2, -dy / 2, dx / 2, dy / 2)
    return affinity.translate(
        affinity.rotate(rectangle, yaw, origin=(0, 0), use_radians=True), x, y
    )


def test_scene_layout():
    for index in range(5):
        frame = scene(index)
        boxes = np.concatenate([frame.boxes, frame.clutter]).astype(np.float64)
        shapes = [footprint(box) for box in boxes]
        for i in range(len(shapes)):
            for j in range(i + 1, len(shapes)):
                assert shapes[i].intersection(shapes[j]).area == 0, (index, i, j)
        assert min(shape.distance(Point(0, 0)) for shape in shapes) > 0.5  # the sensor stays free
        objects = frame.boxes.astype(np.float64)
        assert ((objects[:, 0] >= 2) & (objects[:, 0] <= 50) & (np.abs(objects[:, 1]) <= 24)).all()
        bottom = objects[:, 2] - objects[:, 5] / 2
        np.testing.assert_allclose(
            bottom, -SENSOR_HEIGHT - objects[:, :2] @ frame.slopes, atol=1e-5
        )
        assert ((objects[:, 6] >= -math.pi) & (objects[:, 6] < math.pi)).all()
        cars = frame.labels == 0
        assert (
            4 <= cars.sum() <= 12
            and (frame.labels == 1).sum() <= 4
            and (frame.labels == 2).sum() <= 3
        )
        assert (
            np.abs(objects[cars, 3] - 3.9).max() < 0.8
            and np.abs(objects[cars, 5] - 1.56).max() < 0.32
        )


def read_label_fields(path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def test_written_frames_read_back(tmp_path):
    simulate_kitti(tmp_path, SPLITS, seed=7, sensor=SMALL)
    assert read_image_set(tmp_path, "train") == ["000000", "000001", "000002"]
    assert read_image_set(tmp_path, "val") == ["000003", "000004"]
    for index in range(5):
        frame_id = f"{index:06d}"
        frame = read_kitti_frame(tmp_path, frame_id)
        expected = scene(index)
        view = in_camera_view(expected.boxes)
        assert torch.equal(frame.points, torch.from_numpy(expected.points))
        assert torch.equal(frame.labels, torch.from_numpy(expected.labels[view]))
        boxes = torch.from_numpy(expected.boxes[view])
        assert (frame.boxes[:, :6] - boxes[:, :6]).abs().max() < 0.015
        yaw_gap = torch.remainder(frame.boxes[:, 6] - boxes[:, 6] + math.pi, 2 * math.pi) - math.pi
        assert yaw_gap.abs().max() < 0.006
        fields = read_label_fields(tmp_path / "training" / "label_2" / f"{frame_id}.txt")
        assert all(len(row) == 15 and row[1] == "0.00" for row in fields)
        assert [int(row[2]) for row in fields] == expected.occlusion[view].tolist()
        azimuth = np.degrees(np.arctan2(expected.boxes[:, 1], expected.boxes[:, 0]))
        assert view.tolist() == ((np.abs(azimuth) < 45) & (expected.boxes[:, 0] > 0)).tolist()


def folder_bytes(root) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_seeded_idempotent_and_independent_of_split_sizes(tmp_path):
    first, again, other, resized = (tmp_path / name for name in ("a", "b", "c", "d"))
    simulate_kitti(first, SPLITS, seed=3, sensor=SMALL)
    simulate_kitti(again, SPLITS, seed=3, sensor=SMALL)
    simulate_kitti(other, SPLITS, seed=4, sensor=SMALL)
    simulate_kitti(resized, {"train": 2, "val": 3}, seed=3, sensor=SMALL)
    assert folder_bytes(first) == folder_bytes(again)
    velodyne = "training/velodyne/000001.bin"
    assert folder_bytes(first)[velodyne] != folder_bytes(other)[velodyne]
    assert {k: v for k, v in folder_bytes(resized).items() if k.startswith("training")} == {
        k: v for k, v in folder_bytes(first).items() if k.startswith("training")
    }
    stamps = {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()}
    simulate_kitti(first, SPLITS, seed=3, sensor=SMALL)
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()} == stamps
    assert not list(first.rglob("*.part"))
    simulate_kitti(first, SPLITS, seed=4, sensor=SMALL)  # another request is written anew
    assert folder_bytes(first)[velodyne] == folder_bytes(other)[velodyne]


def test_sensor_rays():
    directions = Sensor().directions()
    assert directions.shape == (32 * 1440, 3)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0)
    elevation = np.degrees(np.arcsin(directions[:, 2]))
    assert elevation.max() == pytest.approx(2.0) and elevation.min() == pytest.approx(-24.8)
    with pytest.raises(ValueError, match="2 beams"):
        Sensor(beams=1)
