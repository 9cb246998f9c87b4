"""Readers for the field's files, validated: KITTI calibration, labels and frame lists, and the point
clouds of KITTI, nuScenes and Waymo (OpenPCDet's processed ``.npy``).

KITTI labels live in the rectified camera frame (x right, y down, z forward; a box's location is its
bottom centre, its dimensions (h, w, l) and ``rotation_y`` its heading about the camera y axis);
:func:`camera_boxes_to_lidar` turns them into the app's LiDAR boxes (see ``frames.py``).
Bad files raise ``InputError`` naming the file (and line) and what was expected.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from apps.pointcloud.boxes import box_corners_3d
from apps.pointcloud.frames import CLASSES, Frame
from core.train.errors import InputError, input_file

log = logging.getLogger(__name__)

CALIB_KEYS = {"P2": (3, 4), "R0_rect": (3, 3), "Tr_velo_to_cam": (3, 4)}
CALIB_ALIASES = {"R_rect": "R0_rect", "Tr_velo_cam": "Tr_velo_to_cam"}  # KITTI tracking's names
# KITTI type → (class index, counted by the benchmark); neighbouring types are kept but ignored
KEPT_TYPES = {
    "Car": (0, True),
    "Pedestrian": (1, True),
    "Cyclist": (2, True),
    "Van": (0, False),
    "Person_sitting": (1, False),
}
SKIPPED_TYPES = {"DontCare", "Truck", "Tram", "Misc"}
# (min 2-D box height px, max occlusion level, max truncation) of easy, moderate, hard
DIFFICULTY_LIMITS = ((40.0, 0, 0.15), (25.0, 1, 0.30), (25.0, 2, 0.50))
LABEL_FIELDS = 15
IMAGE_SIZE = (1242, 375)  # KITTI's colour images (width, height), pixels


@dataclass(eq=False)  # not frozen: it travels in batches, which Lightning rebuilds
class Calib:
    """One frame's KITTI calibration as float64 torch tensors: the left colour camera's projection
    ``P2 [3, 4]``, the rectifying rotation ``R0_rect [3, 3]`` and ``Tr_velo_to_cam [3, 4]``."""

    P2: torch.Tensor
    R0_rect: torch.Tensor
    Tr_velo_to_cam: torch.Tensor

    def velo_to_rect(self) -> torch.Tensor:
        """The ``[4, 4]`` homogeneous map from LiDAR to rectified camera coordinates."""
        rect = torch.eye(4, dtype=torch.float64)
        rect[:3, :3] = self.R0_rect
        velo = torch.eye(4, dtype=torch.float64)
        velo[:3] = self.Tr_velo_to_cam
        return rect @ velo


def read_calib(path: str | Path) -> Calib:
    """A KITTI calib file (``KEY: numbers`` lines); other keys (P0, Tr_imu_to_velo, …) are ignored."""
    path = input_file(path, "a KITTI calib file")
    found: dict[str, torch.Tensor] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        key, _, values = line.partition(":")
        key = CALIB_ALIASES.get(key.strip(), key.strip())
        if key not in CALIB_KEYS:
            continue
        shape = CALIB_KEYS[key]
        numbers = _floats(values.split(), f"{path}:{number}")
        if len(numbers) != shape[0] * shape[1]:
            raise InputError(
                f"{path}:{number}: {key} expected {shape[0] * shape[1]} numbers, got {len(numbers)}"
            )
        found[key] = torch.tensor(numbers, dtype=torch.float64).reshape(shape)
    missing = [key for key in CALIB_KEYS if key not in found]
    if missing:
        raise InputError(
            f"{path}: missing {', '.join(missing)} (expected a KITTI object calib file)"
        )
    return Calib(**found)


def _floats(tokens: list[str], where: str) -> list[float]:
    try:
        return [float(token) for token in tokens]
    except ValueError as error:
        raise InputError(f"{where}: not a number ({error})") from None


def _transform(points: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``points [N, 3]`` through a ``[4, 4]`` homogeneous map, in float64, back in their dtype."""
    p = points.to(torch.float64)
    return (p @ matrix[:3, :3].T + matrix[:3, 3]).to(points.dtype)


def lidar_to_camera(points: torch.Tensor, calib: Calib) -> torch.Tensor:
    """LiDAR ``[N, 3]`` → rectified camera coordinates ``[N, 3]``."""
    return _transform(points, calib.velo_to_rect())


def camera_to_lidar(points: torch.Tensor, calib: Calib) -> torch.Tensor:
    """Rectified camera ``[N, 3]`` → LiDAR coordinates ``[N, 3]``."""
    return _transform(points, torch.linalg.inv(calib.velo_to_rect()))


def wrap_angle(angle: torch.Tensor) -> torch.Tensor:
    """Angles wrapped to [−π, π)."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def camera_boxes_to_lidar(
    loc: torch.Tensor, dims: torch.Tensor, rotation_y: torch.Tensor, calib: Calib
) -> torch.Tensor:
    """KITTI boxes (bottom centre ``loc [M, 3]``, ``dims (h, w, l) [M, 3]``, ``rotation_y [M]``) →
    LiDAR boxes ``[M, 7]`` float32: centre z = bottom + h/2, (dx, dy, dz) = (l, w, h),
    yaw = −rotation_y − π/2."""
    centre = camera_to_lidar(loc.to(torch.float64), calib)
    h, w, l = dims.to(torch.float64).unbind(-1)
    centre[:, 2] += h / 2
    yaw = wrap_angle(-rotation_y.to(torch.float64) - math.pi / 2)
    return torch.cat([centre, torch.stack([l, w, h, yaw], -1)], -1).float()


def lidar_boxes_to_camera(
    boxes: torch.Tensor, calib: Calib
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The inverse of :func:`camera_boxes_to_lidar`: ``boxes [M, 7]`` → (loc [M, 3], dims (h, w, l)
    [M, 3], rotation_y [M]), float64."""
    b = boxes.to(torch.float64)
    bottom = b[:, :3].clone()
    bottom[:, 2] -= b[:, 5] / 2
    dims = b[:, [5, 4, 3]]
    return lidar_to_camera(bottom, calib), dims, wrap_angle(-b[:, 6] - math.pi / 2)


def in_image(
    points: torch.Tensor, calib: Calib, image_size: tuple[int, int] = IMAGE_SIZE
) -> torch.Tensor:
    """Which LiDAR points ``[N, 3+]`` the camera sees (in front of it and projecting inside the
    ``(width, height)`` image) → bool ``[N]``. KITTI labels only what the camera sees, so training
    and evaluation keep only these points (OpenPCDet's ``FOV_POINTS_ONLY``)."""
    rect = lidar_to_camera(points[:, :3].to(torch.float64), calib)
    uvw = torch.cat([rect, torch.ones_like(rect[:, :1])], -1) @ calib.P2.T
    uv = uvw[:, :2] / uvw[:, 2:].clamp(min=1e-6)
    width, height = image_size
    return (
        (rect[:, 2] > 0)
        & (uv[:, 0] >= 0)
        & (uv[:, 0] < width)
        & (uv[:, 1] >= 0)
        & (uv[:, 1] < height)
    )


def image_boxes(
    boxes: torch.Tensor, calib: Calib, image_size: tuple[int, int] = IMAGE_SIZE
) -> torch.Tensor:
    """2-D boxes ``[M, 4]`` (left, top, right, bottom px): the 8 corners projected with P2, clipped
    to the ``(width, height)`` image. Corners behind the camera are held at 0.1 m depth."""
    corners = box_corners_3d(boxes.to(torch.float64))
    rect = lidar_to_camera(corners.reshape(-1, 3), calib)
    uvw = torch.cat([rect, torch.ones_like(rect[:, :1])], -1) @ calib.P2.T
    uv = (uvw[:, :2] / uvw[:, 2:].clamp(min=0.1)).reshape(-1, 8, 2)
    limit = torch.tensor(image_size, dtype=torch.float64) - 1
    low = torch.minimum(uv.amin(1), limit).clamp(min=0)
    high = torch.minimum(uv.amax(1), limit).clamp(min=0)
    return torch.cat([low, high], -1)


def format_kitti_label(
    boxes: torch.Tensor,
    labels: torch.Tensor,
    scores: torch.Tensor | None,
    calib: Calib,
    image_size: tuple[int, int] = IMAGE_SIZE,
    occlusion: torch.Tensor | None = None,
) -> list[str]:
    """KITTI label lines for LiDAR ``boxes [k, 7]`` of class ``labels [k]``: truncation 0, the
    ``occlusion [k]`` levels (0 when None), alpha, the projected 2-D box, h w l, x y z, rotation_y
    with 2 decimals as the devkit writes them, and the score (4 decimals) when ``scores`` is given
    (a result file); without scores the 15 fields of a ground-truth file."""
    loc, dims, rotation_y = lidar_boxes_to_camera(boxes, calib)
    alpha = wrap_angle(rotation_y - torch.atan2(loc[:, 0], loc[:, 2]))
    numbers = torch.cat(
        [alpha[:, None], image_boxes(boxes, calib, image_size), dims, loc, rotation_y[:, None]], -1
    ).tolist()
    levels = [0] * len(numbers) if occlusion is None else occlusion.tolist()
    lines = [
        f"{CLASSES[label]} 0.00 {level} " + " ".join(f"{v:.2f}" for v in row)
        for row, label, level in zip(numbers, labels.tolist(), levels, strict=True)
    ]
    if scores is not None:
        lines = [f"{line} {score:.4f}" for line, score in zip(lines, scores.tolist(), strict=True)]
    return lines


def read_kitti_labels(
    path: str | Path, calib: Calib
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A KITTI ``label_2`` file → LiDAR boxes float32 ``[M, 7]``, labels int64 ``[M]`` and KITTI
    difficulty int64 ``[M]`` of its Car/Pedestrian/Cyclist objects; Van and Person_sitting come as
    Car and Pedestrian with difficulty −1, DontCare/Truck/Tram/Misc are skipped. An empty file is a
    frame without objects."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file (expected a KITTI label_2 file)")
    rows, labels, counted = [], [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if len(fields) not in (LABEL_FIELDS, LABEL_FIELDS + 1):
            raise InputError(f"{where}: expected 15 fields (16 with a score), got {len(fields)}")
        name = fields[0]
        if name not in KEPT_TYPES and name not in SKIPPED_TYPES:
            raise InputError(f"{where}: unknown object type {name!r}")
        values = _floats(fields[1:LABEL_FIELDS], where)
        if name in KEPT_TYPES:
            rows.append(values)
            labels.append(KEPT_TYPES[name][0])
            counted.append(KEPT_TYPES[name][1])
    table = torch.tensor(rows, dtype=torch.float64).reshape(-1, LABEL_FIELDS - 1)
    boxes = camera_boxes_to_lidar(table[:, 10:13], table[:, 7:10], table[:, 13], calib)
    difficulty = kitti_difficulty(table[:, 6] - table[:, 4], table[:, 1], table[:, 0])
    difficulty[~torch.tensor(counted, dtype=torch.bool)] = -1
    return boxes, torch.tensor(labels, dtype=torch.int64), difficulty


def kitti_difficulty(
    height: torch.Tensor, occlusion: torch.Tensor, truncation: torch.Tensor
) -> torch.Tensor:
    """KITTI's difficulty int64 ``[M]`` (0 easy, 1 moderate, 2 hard, −1 none) from the 2-D box
    height in px, the occlusion level and the truncation of each object."""
    difficulty = torch.full(height.shape, -1, dtype=torch.int64)
    for level, (min_height, max_occlusion, max_truncation) in reversed(
        list(enumerate(DIFFICULTY_LIMITS))
    ):
        fits = (
            (height >= min_height) & (occlusion <= max_occlusion) & (truncation <= max_truncation)
        )
        difficulty[fits] = level
    return difficulty


def read_points(path: str | Path) -> torch.Tensor:
    """A point cloud as float32 ``[N, 4]`` (x, y, z, intensity in [0, 1]) by its name: KITTI ``.bin``
    (float32 × 4), nuScenes ``.pcd.bin`` (float32 × 5, intensity 0–255 scaled to [0, 1]) or
    OpenPCDet's processed Waymo ``.npy`` ([N, 6] x y z intensity elongation NLZ-flag: points inside
    no-label zones dropped, raw intensity squashed with tanh as OpenPCDet does). Rows with NaN/inf are
    dropped with a warning; an empty file gives an empty cloud (the caller decides)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file (expected a point cloud)")
    if path.name.endswith(".pcd.bin"):
        points = _read_records(path, 5)[:, :4]
        points[:, 3] /= 255.0
    elif path.suffix == ".bin":
        points = _read_records(path, 4)
    elif path.suffix == ".npy":
        points = _read_waymo(path)
    else:
        raise InputError(f"{path}: unknown point cloud type (expected .bin, .pcd.bin or .npy)")
    finite = np.isfinite(points).all(1)
    if not finite.all():
        log.warning(
            "%s: dropped %d of %d points with NaN/inf values", path, (~finite).sum(), len(points)
        )
        points = points[finite]
    return torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))


def _read_records(path: Path, width: int) -> np.ndarray:
    """A raw float32 file of ``width``-number records → ``[N, width]``."""
    size, record = path.stat().st_size, 4 * width
    if size % record:
        raise InputError(
            f"{path}: size {size} bytes is not a multiple of the {record}-byte record "
            f"(float32 × {width})"
        )
    return np.fromfile(path, dtype=np.float32).reshape(-1, width)


def _read_waymo(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise InputError(f"{path}: not a readable .npy array ({error})") from None
    if array.ndim != 2 or array.shape[1] != 6:
        raise InputError(
            f"{path}: expected an [N, 6] array (x y z intensity elongation NLZ-flag), "
            f"got shape {list(array.shape)}"
        )
    points = array[array[:, 5] == -1, :4].astype(np.float32)
    points[:, 3] = np.tanh(points[:, 3])
    return points


def read_image_set(root: str | Path, split: str) -> list[str]:
    """The frame ids listed in ``root/ImageSets/<split>.txt`` (blank lines ignored)."""
    path = input_file(Path(root) / "ImageSets" / f"{split}.txt", f"the {split!r} frame list")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise InputError(f"{path}: no frame ids (expected one id a line)")
    return ids


def read_kitti_frame(root: str | Path, frame_id: str, calib: Calib | None = None) -> Frame:
    """Frame ``frame_id`` of a KITTI layout under ``root/training`` (velodyne, label_2, calib), its
    boxes in the LiDAR frame; ``calib`` (one the caller cached) skips reading ``calib/<id>.txt``."""
    folder = Path(root) / "training"
    calib = calib or read_calib(folder / "calib" / f"{frame_id}.txt")
    boxes, labels, difficulty = read_kitti_labels(folder / "label_2" / f"{frame_id}.txt", calib)
    points = read_points(folder / "velodyne" / f"{frame_id}.bin")
    return Frame(frame_id, points, boxes, labels, difficulty)
