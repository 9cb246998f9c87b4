"""The readers against the real KITTI sample frames, independent re-computations (numpy projection,
KITTI devkit-style corners, the difficulty rules written out) and every bad-input path."""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from apps.pointcloud.readers import (
    Calib,
    camera_boxes_to_lidar,
    camera_to_lidar,
    format_kitti_label,
    lidar_boxes_to_camera,
    lidar_to_camera,
    read_calib,
    read_image_set,
    read_kitti_frame,
    read_kitti_labels,
    read_points,
)
from core.train import InputError

KITTI = "pointcloud/kitti"
CALIB_000000 = (  # training frame 000000's P2, R0_rect and Tr_velo_to_cam
    "P2: 7.070493e+02 0 6.040814e+02 4.575831e+01 0 7.070493e+02 1.805066e+02 -3.454157e-01 "
    "0 0 1 4.981016e-03\n"
    "R0_rect: 9.999128e-01 1.009263e-02 -8.511932e-03 -1.012729e-02 9.999406e-01 -4.037671e-03 "
    "8.470675e-03 4.123522e-03 9.999556e-01\n"
    "Tr_velo_to_cam: 6.927964e-03 -9.999722e-01 -2.757829e-03 -2.457729e-02 -1.162982e-03 "
    "2.749836e-03 -9.999955e-01 -6.127237e-02 9.999753e-01 6.931141e-03 -1.143899e-03 -3.321029e-01\n"
)


def read_calib_text(text: str) -> Calib:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "calib.txt"
        path.write_text(text)
        return read_calib(path)


@pytest.fixture
def calib() -> Calib:
    return read_calib_text(CALIB_000000)


def points_in_box(points: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """bool ``[N]``: points inside one LiDAR box, by rotating them into the box's frame."""
    x, y, z, dx, dy, dz, yaw = box.tolist()
    shifted = points[:, :3].double() - torch.tensor([x, y, z], dtype=torch.float64)
    along = shifted[:, 0] * math.cos(yaw) + shifted[:, 1] * math.sin(yaw)
    across = -shifted[:, 0] * math.sin(yaw) + shifted[:, 1] * math.cos(yaw)
    return (along.abs() <= dx / 2) & (across.abs() <= dy / 2) & (shifted[:, 2].abs() <= dz / 2)


def random_boxes(gen: torch.Generator, count: int) -> torch.Tensor:
    """LiDAR boxes in front of the camera (x 5–40 m, |y| ≤ 0.6 x)."""
    u = torch.rand(count, 7, generator=gen, dtype=torch.float64)
    x = 5 + 35 * u[:, 0]
    return torch.stack(
        [x, (2 * u[:, 1] - 1) * 0.6 * x, -1 + u[:, 2], 0.5 + 4 * u[:, 3], 0.5 + 1.5 * u[:, 4],
         1 + u[:, 5], (2 * u[:, 6] - 1) * math.pi],
        -1,
    ).float()  # fmt: skip


def yaw_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.remainder(a - b + math.pi, 2 * math.pi) - math.pi


def test_moderate_cars_hold_points(shared_data):
    root = shared_data / KITTI
    checked = 0
    for frame_id in read_image_set(root, "train"):
        frame = read_kitti_frame(root, frame_id)
        assert frame.points.dtype == torch.float32 and frame.points.shape[1] == 4
        assert frame.boxes.shape == (len(frame.labels), 7)
        for box in frame.boxes[
            (frame.labels == 0) & (frame.difficulty >= 0) & (frame.difficulty <= 1)
        ]:
            assert points_in_box(frame.points, box).sum() >= 10, (frame_id, box)
            checked += 1
    assert checked >= 2


def test_lidar_camera_matches_numpy_and_round_trips(shared_data, gen):
    calib = read_calib(shared_data / KITTI / "training/calib/000003.txt")
    points = (torch.rand(500, 3, generator=gen, dtype=torch.float64) - 0.5) * 100
    tr = np.vstack([calib.Tr_velo_to_cam.numpy(), [0, 0, 0, 1]])
    expected = calib.R0_rect.numpy() @ (tr @ np.c_[points.numpy(), np.ones(500)].T)[:3]
    camera = lidar_to_camera(points, calib)
    np.testing.assert_allclose(camera.numpy(), expected.T, atol=1e-9)
    assert (camera_to_lidar(camera, calib) - points).abs().max() < 1e-5
    boxes = random_boxes(gen, 50)
    back = camera_boxes_to_lidar(*lidar_boxes_to_camera(boxes, calib), calib)
    assert (back[:, :6] - boxes[:, :6]).abs().max() < 1e-5
    assert yaw_gap(back[:, 6], boxes[:, 6]).abs().max() < 1e-5


def test_box_conventions(calib, gen):
    """Bottom centre = centre − h/2 in z; the heading maps to KITTI's (cos ry, 0, −sin ry)."""
    boxes = random_boxes(gen, 20).double()
    loc, dims, rotation_y = lidar_boxes_to_camera(boxes, calib)
    bottom = boxes[:, :3] - torch.stack([0 * boxes[:, 5], 0 * boxes[:, 5], boxes[:, 5] / 2], -1)
    torch.testing.assert_close(loc, lidar_to_camera(bottom, calib))
    torch.testing.assert_close(dims, boxes[:, [5, 4, 3]])
    heading = torch.stack([boxes[:, 6].cos(), boxes[:, 6].sin(), 0 * boxes[:, 6]], -1)
    in_camera = lidar_to_camera(heading, calib) - lidar_to_camera(torch.zeros_like(heading), calib)
    kitti = torch.stack([rotation_y.cos(), 0 * rotation_y, -rotation_y.sin()], -1)
    assert (in_camera - kitti).abs().max() < 0.02  # R0_rect and Tr are not exact axis swaps


def devkit_image_box(loc: np.ndarray, dims: np.ndarray, ry: float, calib: Calib) -> np.ndarray:
    """A KITTI box's 2-D box from devkit-style corners (camera frame, y down, bottom centre)."""
    (h, w, l) = dims
    x = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * l / 2
    y = np.array([0, 0, 0, 0, -1, -1, -1, -1]) * h
    z = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * w / 2
    rotation = np.array(
        [[math.cos(ry), 0, math.sin(ry)], [0, 1, 0], [-math.sin(ry), 0, math.cos(ry)]]
    )
    corners = rotation @ np.stack([x, y, z]) + loc[:, None]
    uvw = calib.P2.numpy() @ np.vstack([corners, np.ones(8)])
    uv = uvw[:2] / uvw[2]
    return np.clip(np.r_[uv.min(1), uv.max(1)], 0, [1241, 374, 1241, 374])


def test_image_boxes_match_devkit_corners(gen):
    """With an upright camera (R0_rect = I, an exact axis swap) the LiDAR and KITTI boxes coincide."""
    swap = torch.tensor(
        [[0, -1, 0, -0.02], [0, 0, -1, -0.06], [1, 0, 0, -0.33]], dtype=torch.float64
    )
    upright = Calib(read_calib_text(CALIB_000000).P2, torch.eye(3, dtype=torch.float64), swap)
    boxes = random_boxes(gen, 30)
    lines = format_kitti_label(boxes, torch.zeros(30, dtype=torch.int64), None, upright)
    for line, loc, dims, ry in zip(lines, *lidar_boxes_to_camera(boxes, upright), strict=True):
        written = np.array([float(v) for v in line.split()[4:8]])
        expected = devkit_image_box(loc.numpy(), dims.numpy(), ry.item(), upright)
        np.testing.assert_allclose(written, expected, atol=0.006)


def test_format_then_read_round_trip(tmp_path, calib, gen):
    boxes = random_boxes(gen, 30)
    labels = torch.randint(0, 3, (30,), generator=gen)
    scores = torch.rand(30, generator=gen)
    lines = format_kitti_label(boxes, labels, scores, calib)
    assert all(len(line.split()) == 16 for line in lines)
    assert [float(line.split()[-1]) for line in lines] == pytest.approx(scores.tolist(), abs=1e-4)
    path = tmp_path / "000000.txt"
    path.write_text("\n".join(lines) + "\n")
    read, read_labels, difficulty = read_kitti_labels(path, calib)
    assert torch.equal(read_labels, labels)
    assert (read[:, :6] - boxes[:, :6]).abs().max() < 0.015
    assert yaw_gap(read[:, 6], boxes[:, 6]).abs().max() < 0.006
    heights = np.array([float(line.split()[7]) - float(line.split()[5]) for line in lines])
    assert difficulty.tolist() == [0 if h >= 40 else 1 if h >= 25 else -1 for h in heights]


def kitti_difficulty_by_rules(height: float, occluded: int, truncated: float) -> int:
    for level, (min_h, max_occ, max_trunc) in enumerate(
        ((40, 0, 0.15), (25, 1, 0.3), (25, 2, 0.5))
    ):
        if height >= min_h and occluded <= max_occ and truncated <= max_trunc:
            return level
    return -1


def test_label_classes_and_difficulty(tmp_path, calib, gen):
    types = [
        "Car",
        "Pedestrian",
        "Cyclist",
        "Van",
        "Person_sitting",
        "DontCare",
        "Truck",
        "Tram",
        "Misc",
    ]
    rows, expected = [], []
    for _ in range(300):
        kind = types[int(torch.randint(0, len(types), (1,), generator=gen))]
        truncated, height = (
            torch.rand(1, generator=gen).item() * 0.6,
            10 + 50 * torch.rand(1, generator=gen).item(),
        )
        occluded = int(torch.randint(0, 4, (1,), generator=gen))
        rows.append(
            f"{kind} {truncated:.2f} {occluded} 0.1 100.00 150.00 200.00 {150 + height:.2f} "
            "1.50 1.60 3.90 1.00 1.70 20.00 0.30"
        )
        if kind in ("Car", "Pedestrian", "Cyclist"):
            level = kitti_difficulty_by_rules(round(height, 2), occluded, round(truncated, 2))
            expected.append((("Car", "Pedestrian", "Cyclist").index(kind), level))
        elif kind in ("Van", "Person_sitting"):
            expected.append((0 if kind == "Van" else 1, -1))
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(rows) + "\n\n")
    boxes, labels, difficulty = read_kitti_labels(path, calib)
    assert list(zip(labels.tolist(), difficulty.tolist(), strict=True)) == expected
    assert boxes.shape == (len(expected), 7) and boxes.dtype == torch.float32


def test_empty_label_file_is_a_frame_without_objects(tmp_path, calib):
    path = tmp_path / "none.txt"
    path.write_text("")
    boxes, labels, difficulty = read_kitti_labels(path, calib)
    assert boxes.shape == (0, 7) and labels.shape == (0,) and difficulty.shape == (0,)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "Car 0.00 0 0.1 1 2 3 4 1.5 1.6 3.9 1.0",
            r":2: expected 15 fields \(16 with a score\), got 12",
        ),
        ("Car 0.00 0 0.1 1 2 3 4 1.5 1.6 3.9 1.0 1.7 2x 0.3", r":2: not a number"),
        ("Bus 0.00 0 0.1 1 2 3 4 1.5 1.6 3.9 1.0 1.7 20 0.3", r":2: unknown object type 'Bus'"),
    ],
)
def test_bad_label_line(tmp_path, calib, line, message):
    path = tmp_path / "000007.txt"
    path.write_text("Car 0.00 0 0.1 1 2 3 4 1.5 1.6 3.9 1.0 1.7 20 0.3\n" + line + "\n")
    with pytest.raises(InputError, match="000007.txt" + message):
        read_kitti_labels(path, calib)


def test_bad_calib(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text(CALIB_000000.replace("Tr_velo_to_cam", "Tr_something"))
    with pytest.raises(InputError, match=r"calib.txt: missing Tr_velo_to_cam"):
        read_calib(path)
    path.write_text(CALIB_000000.replace("R0_rect: 9.999128e-01 ", "R0_rect: "))
    with pytest.raises(InputError, match=r"calib.txt:2: R0_rect expected 9 numbers, got 8"):
        read_calib(path)
    with pytest.raises(InputError, match="no such file"):
        read_calib(tmp_path / "absent.txt")


def test_kitti_bin_reads_exactly_and_refuses_truncation(tmp_path, gen):
    points = torch.rand(100, 4, generator=gen)
    path = tmp_path / "000001.bin"
    points.numpy().tofile(path)
    assert torch.equal(read_points(path), points)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(InputError, match=r"000001.bin: size 1596 bytes .* 16-byte record"):
        read_points(path)
    path.write_bytes(b"")
    assert read_points(path).shape == (0, 4)


def test_nan_rows_dropped_and_counted(tmp_path, gen, caplog):
    points = torch.rand(120, 4, generator=gen)
    points[[3, 50, 99], [0, 2, 1]] = torch.tensor([math.nan, math.inf, -math.inf])
    path = tmp_path / "000002.bin"
    points.numpy().tofile(path)
    with caplog.at_level(logging.WARNING, logger="apps.pointcloud.readers"):
        read = read_points(path)
    keep = torch.ones(120, dtype=torch.bool)
    keep[[3, 50, 99]] = False
    assert torch.equal(read, points[keep])
    assert "000002.bin: dropped 3 of 120 points" in caplog.text


def test_nuscenes_and_waymo_clouds(tmp_path, gen):
    sweep = torch.rand(80, 5, generator=gen) * torch.tensor([50, 50, 5, 255, 31])
    nuscenes = tmp_path / "sweep.pcd.bin"
    sweep.numpy().tofile(nuscenes)
    expected = sweep[:, :4].clone()
    expected[:, 3] /= 255
    torch.testing.assert_close(read_points(nuscenes), expected)
    nuscenes.write_bytes(nuscenes.read_bytes()[:-16])
    with pytest.raises(InputError, match="20-byte record"):
        read_points(nuscenes)

    waymo = np.random.default_rng(0).uniform(-50, 50, (90, 6)).astype(np.float32)
    waymo[:, 5] = np.where(np.arange(90) % 3 == 0, 1.0, -1.0)  # NLZ flag: 1 inside a no-label zone
    path = tmp_path / "0001.npy"
    np.save(path, waymo)
    outside = waymo[waymo[:, 5] == -1]
    expected = np.c_[outside[:, :3], np.tanh(outside[:, 3])]
    np.testing.assert_allclose(read_points(path).numpy(), expected, rtol=1e-6)
    np.save(path, waymo[:, :5])
    with pytest.raises(InputError, match=r"0001.npy: expected an \[N, 6\] array"):
        read_points(path)
    (tmp_path / "cloud.ply").write_text("ply")
    with pytest.raises(InputError, match="unknown point cloud type"):
        read_points(tmp_path / "cloud.ply")


def test_image_sets(tmp_path):
    sets = tmp_path / "ImageSets"
    sets.mkdir()
    (sets / "train.txt").write_text("000000\n\n000003\n  \n")
    assert read_image_set(tmp_path, "train") == ["000000", "000003"]
    (sets / "val.txt").write_text("")
    with pytest.raises(InputError, match=r"val.txt: file is empty"):
        read_image_set(tmp_path, "val")
    (sets / "val.txt").write_text("\n \n")
    with pytest.raises(InputError, match=r"val.txt: no frame ids"):
        read_image_set(tmp_path, "val")
    with pytest.raises(InputError, match=r"test.txt: no such file"):
        read_image_set(tmp_path, "test")
