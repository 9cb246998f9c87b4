"""The built-in LiDAR data: seeded synthetic street scenes, ray cast and written in the KITTI layout,
so simulated and real data go through the same readers.

A scene: a flat ground plane 1.73 m below the sensor (KITTI's mounting height) with a mild random
tilt; a road along x with Cars (mostly aligned to it), Pedestrians and Cyclists on the ground in
x ∈ [2, 50] m, |y| ≤ 24 m, sized after KITTI's statistics; and unlabelled clutter: building walls
beyond |y| = 14–26 m, poles / tree trunks and bushes by the road. Nothing overlaps in bird's-eye view
(centre distance against the sum of half-diagonals plus a margin).

The sensor spins at the origin: 32 beams from +2° to −24.8° elevation (HDL-like) × 1440 azimuth
steps, max range 70 m, range noise σ 0.02 m, 5 % dropouts, intensity = the surface's reflectance
plus noise, in [0, 1]. Every ray is tested against the boxes its azimuth and elevation could reach
(slab method in each box's frame) and the ground; the nearest surface wins, so occlusion is real.
An object's KITTI occlusion level is the share of the rays through it that something nearer blocked.
Like KITTI, only objects in the camera's view (x > 0, |azimuth| < 45°) are labelled.

About 20 ms a frame on one core (files included), ≈ 42k points and 0.7 MB a frame.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from tqdm import tqdm

from apps.pointcloud.raycast import SENSOR_HEIGHT, Sensor, cast_rays
from apps.pointcloud.readers import Calib, format_kitti_label, in_image
from core.train.files import write_atomically

log = logging.getLogger(__name__)

DEFAULT_SPLITS = MappingProxyType({"train": 400, "val": 100})
TILT_DEG = 0.2  # σ of the ground's pitch and roll
# per class (Car, Pedestrian, Cyclist): mean and σ of length, width, height (KITTI statistics)
SIZES = np.array([
    [[3.9, 0.3], [1.6, 0.1], [1.56, 0.1]],
    [[0.8, 0.1], [0.6, 0.05], [1.73, 0.1]],
    [[1.76, 0.1], [0.6, 0.05], [1.73, 0.05]],
])  # fmt: skip
COUNTS = ((4, 12), (0, 4), (0, 3))  # objects per frame and class, inclusive
ALIGNED = np.array([0.85, 0.0, 0.7])  # chance of heading along the road, per class
HEADING_NOISE = np.array([0.08, 0.0, 0.15])  # σ of the heading about the road direction, rad
REFLECTANCE = np.array([[0.15, 0.6], [0.1, 0.4], [0.15, 0.5]])  # per class, uniform range
CLUTTER_REFLECTANCE = (0.2, 0.6)
GROUND_REFLECTANCE, INTENSITY_NOISE = 0.1, 0.03
MARGIN = 0.5  # metres kept free between objects' bounding circles
EGO = np.array([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]])  # the sensor's own car, kept free
OBJECT_X, ROADSIDE_X, MAX_Y = (2.0, 50.0), (-40.0, 60.0), 24.0
TRIES = 8  # positions proposed per object before it is dropped
# a KITTI camera: P2 of training frame 000000, no rectification, the LiDAR→camera axis swap
P2 = [[707.0493, 0, 604.0814, 45.75831], [0, 707.0493, 180.5066, -0.3454157], [0, 0, 1, 0.004981]]
VELO_TO_CAM = [[0, -1, 0, -0.02457729], [0, 0, -1, -0.06127237], [1, 0, 0, -0.3321029]]


@dataclass
class Scene:
    """One simulated sweep: points float32 ``[N, 4]``; the objects' boxes float32 ``[M, 7]``, labels
    int64 ``[M]`` and KITTI occlusion levels int64 ``[M]`` (3 when no ray reached it); the clutter
    boxes float32 ``[C, 7]``; the ground's slopes (a, b): ground z = −1.73 − a·x − b·y."""

    points: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    occlusion: np.ndarray
    clutter: np.ndarray
    slopes: np.ndarray


def kitti_calib() -> Calib:
    """The simulated frames' calibration."""
    return Calib(
        torch.tensor(P2, dtype=torch.float64),
        torch.eye(3, dtype=torch.float64),
        torch.tensor(VELO_TO_CAM, dtype=torch.float64),
    )


def in_camera_view(boxes: np.ndarray) -> np.ndarray:
    """Boxes ``[M, 7]`` whose centre the simulated camera sees (it projects into the image) → bool
    ``[M]``: KITTI labels only what its camera sees."""
    return in_image(torch.from_numpy(boxes[:, :3]), kitti_calib()).numpy()


def ground_height(xy: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    """The ground's z under points ``[..., 2]``."""
    return -SENSOR_HEIGHT - xy @ slopes


def simulate_frame(rng: np.random.Generator, sensor: Sensor | None = None) -> Scene:
    """One scene drawn from ``rng`` and scanned by ``sensor`` (the default HDL-like one)."""
    sensor = sensor or Sensor()
    slopes = np.tan(np.radians(rng.normal(0.0, TILT_DEG, 2)))
    walls_at = rng.uniform(14.0, 26.0, 2)  # |y| of the left (+y) and right (−y) walls' inner faces
    labels, objects = _objects(rng, walls_at)
    clutter = np.concatenate([_walls(rng, walls_at), _roadside(rng, walls_at, objects)])
    boxes = np.concatenate([objects, clutter])
    boxes[:, 2] = ground_height(boxes[:, :2], slopes) + boxes[:, 5] / 2
    low, high = REFLECTANCE[labels].T
    reflectance = np.concatenate(
        [
            rng.uniform(low, high),
            rng.uniform(*CLUTTER_REFLECTANCE, len(clutter)),
            [GROUND_REFLECTANCE],
        ]
    )
    distance, hit, crossing = cast_rays(sensor, boxes, slopes)
    seen = np.bincount(hit, minlength=len(boxes) + 1)[: len(objects)]
    keep = np.isfinite(distance) & (rng.random(len(distance)) >= sensor.dropout)
    ranges = distance[keep] + rng.normal(0.0, sensor.range_noise, keep.sum())
    intensity = reflectance[hit[keep]] + rng.normal(0.0, INTENSITY_NOISE, keep.sum())
    points = np.concatenate(
        [sensor.directions()[keep] * ranges[:, None], np.clip(intensity, 0, 1)[:, None]], -1
    )
    return Scene(
        points.astype(np.float32),
        boxes[: len(objects)].astype(np.float32),
        labels,
        _occlusion_levels(seen, crossing[: len(objects)]),
        boxes[len(objects) :].astype(np.float32),
        slopes,
    )


def _objects(rng: np.random.Generator, walls_at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The labelled objects: labels int64 ``[M]`` and boxes ``[M, 7]`` (z still 0)."""
    labels = np.repeat(np.arange(len(COUNTS)), [rng.integers(lo, hi + 1) for lo, hi in COUNTS])
    mean, sigma = SIZES[labels, :, 0], SIZES[labels, :, 1]
    sizes = np.clip(mean + sigma * rng.standard_normal(mean.shape), 0.8 * mean, 1.2 * mean)
    road = rng.integers(0, 2, len(labels)) * math.pi + HEADING_NOISE[labels] * rng.normal(
        size=len(labels)
    )
    anywhere = rng.uniform(-np.pi, np.pi, len(labels))
    yaws = np.where(rng.random(len(labels)) < ALIGNED[labels], road, anywhere)
    yaws = np.remainder(yaws + math.pi, 2 * math.pi) - math.pi
    reach = np.hypot(sizes[:, 0], sizes[:, 1]) / 2 + MARGIN
    y_range = np.stack(
        [-np.minimum(MAX_Y, walls_at[1] - reach), np.minimum(MAX_Y, walls_at[0] - reach)]
    )
    boxes, kept = _place(rng, sizes, yaws, OBJECT_X, y_range.T, EGO)
    return labels[kept], boxes


def _walls(rng: np.random.Generator, walls_at: np.ndarray) -> np.ndarray:
    """Building walls ``[W, 7]``: segments with gaps along x ∈ [−60, 70] beyond each side's face."""
    walls = []
    for side, inner in zip((1.0, -1.0), walls_at, strict=True):
        lengths, gaps = rng.uniform(8.0, 30.0, 10), rng.uniform(2.0, 8.0, 10)
        starts = -60.0 + np.cumsum(lengths + gaps) - lengths
        thick, height = rng.uniform(0.3, 0.6, 10), rng.uniform(3.0, 8.0, 10)
        y = side * (inner + rng.uniform(0.0, 1.5, 10) + thick / 2)
        zero = np.zeros(10)
        walls.append(np.stack([starts + lengths / 2, y, zero, lengths, thick, height, zero], -1))
    walls = np.concatenate(walls)
    return walls[walls[:, 0] - walls[:, 3] / 2 < 70.0]


def _roadside(rng: np.random.Generator, walls_at: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """Poles / tree trunks and bushes ``[C, 7]`` at 5 m ≤ |y| < the wall, clear of ``objects``."""
    poles, bushes = rng.integers(3, 9), rng.integers(2, 7)
    width = rng.uniform(0.15, 0.5, poles)
    sizes = np.concatenate(
        [
            np.stack([width, width, rng.uniform(3.0, 8.0, poles)], -1),
            rng.uniform((0.8, 0.6, 0.4), (2.5, 1.5, 1.2), (bushes, 3)),
        ]
    )
    side = rng.integers(0, 2, len(sizes))  # 0 left (+y), 1 right
    reach = np.hypot(sizes[:, 0], sizes[:, 1]) / 2 + MARGIN
    far = np.maximum(walls_at[side] - reach, 5.0)
    sign = 1.0 - 2.0 * side
    y_range = np.sort(np.stack([5.0 * sign, far * sign], -1), axis=1)
    yaws = rng.uniform(-np.pi, np.pi, len(sizes))
    boxes, _ = _place(rng, sizes, yaws, ROADSIDE_X, y_range, np.concatenate([EGO, objects]))
    return boxes


def _place(
    rng: np.random.Generator,
    sizes: np.ndarray,
    yaws: np.ndarray,
    x_range: tuple[float, float],
    y_range: np.ndarray,
    taken: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of ``sizes [K, 3]`` and ``yaws [K]`` placed one by one at the first of ``TRIES`` random
    positions (x in ``x_range``, y in ``y_range [K, 2]``) whose bounding circle keeps ``MARGIN``
    from those of ``taken [T, 7]`` and the boxes placed before; an item with no free position is
    dropped. Returns the placed boxes ``[K', 7]`` (z = 0) and which items they are, bool ``[K]``."""
    centres, radii = taken[:, :2], np.hypot(taken[:, 3], taken[:, 4]) / 2
    placed, kept = [], np.zeros(len(sizes), dtype=bool)
    for item, (size, yaw, (y_low, y_high)) in enumerate(zip(sizes, yaws, y_range, strict=True)):
        radius = math.hypot(size[0], size[1]) / 2
        where = np.stack([rng.uniform(*x_range, TRIES), rng.uniform(y_low, y_high, TRIES)], -1)
        gaps = np.linalg.norm(where[:, None] - centres[None], axis=-1) - radii - radius
        free = np.flatnonzero((gaps > MARGIN).all(1))
        if free.size:
            x, y = where[free[0]]
            placed.append([x, y, 0.0, *size, yaw])
            centres, radii = np.vstack([centres, [x, y]]), np.append(radii, radius)
            kept[item] = True
    return np.array(placed, dtype=np.float64).reshape(-1, 7), kept


def _occlusion_levels(seen: np.ndarray, crossing: np.ndarray) -> np.ndarray:
    """KITTI occlusion int64 ``[M]`` from rays ending on each object and rays crossing it: blocked
    share < 0.2 → 0 (visible), < 0.6 → 1 (partly), else 2 (largely); 3 when no ray crossed it."""
    blocked = 1.0 - seen / np.maximum(crossing, 1)
    levels = np.digitize(blocked, [0.2, 0.6])
    return np.where(crossing > 0, levels, 3).astype(np.int64)


def frame_ids(splits: Mapping[str, int]) -> dict[str, list[str]]:
    """Each split's frame ids, numbered consecutively across the splits in their order."""
    ids, start = {}, 0
    for split, count in splits.items():
        ids[split] = [f"{number:06d}" for number in range(start, start + count)]
        start += count
    return ids


def simulate_kitti(
    root: Path,
    splits: Mapping[str, int] = DEFAULT_SPLITS,
    seed: int = 0,
    progress: bool = False,
    sensor: Sensor | None = None,
) -> None:
    """Write simulated frames under ``root`` in the KITTI layout (``training/{velodyne, label_2,
    calib}``, ``ImageSets/<split>.txt``); frame ``i`` is drawn from its own generator ``[seed, i]``.
    Nothing is redone when ``root`` already holds this very request (seed, splits, sensor)."""
    root, sensor = Path(root), sensor or Sensor()
    ids = frame_ids(splits)
    request = json.dumps({"seed": seed, "splits": dict(splits), "sensor": asdict(sensor)})
    if _already_written(root, request, ids):
        return
    log.info("simulating %d LiDAR frames (seed %d) into %s", sum(splits.values()), seed, root)
    training = root / "training"
    for folder in ("training/velodyne", "training/label_2", "training/calib", "ImageSets"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    calib = kitti_calib()
    every = [frame for names in ids.values() for frame in names]
    for number, frame in enumerate(tqdm(every, desc="simulating LiDAR", disable=not progress)):
        scene = simulate_frame(np.random.default_rng([seed, number]), sensor)
        _write_frame(training, frame, scene, calib)
    for split, names in ids.items():
        _write_text(root / "ImageSets" / f"{split}.txt", names)
    write_atomically(root / "simulation.json", lambda path: path.write_text(request))


def _already_written(root: Path, request: str, ids: dict[str, list[str]]) -> bool:
    """Whether ``root`` holds this request's record and its splits' frame lists."""
    files = [root / "simulation.json"] + [root / "ImageSets" / f"{split}.txt" for split in ids]
    if not all(path.is_file() for path in files):
        return False
    lists = [path.read_text().split() for path in files[1:]]
    return files[0].read_text() == request and lists == list(ids.values())


def _write_text(path: Path, lines: list[str]) -> None:
    text = "".join(f"{line}\n" for line in lines)
    write_atomically(path, lambda scratch: scratch.write_text(text))


def _write_frame(training: Path, frame: str, scene: Scene, calib: Calib) -> None:
    """The frame's point cloud, its in-view labels and the calibration, each written atomically."""
    view = in_camera_view(scene.boxes)
    lines = format_kitti_label(
        torch.from_numpy(scene.boxes[view]),
        torch.from_numpy(scene.labels[view]),
        None,
        calib,
        occlusion=torch.from_numpy(scene.occlusion[view]),
    )
    write_atomically(training / "velodyne" / f"{frame}.bin", scene.points.tofile)
    _write_text(training / "label_2" / f"{frame}.txt", lines)
    _write_text(training / "calib" / f"{frame}.txt", _calib_lines(calib))


def _calib_lines(calib: Calib) -> list[str]:
    """KITTI calib lines in the usual order (P0–P3 all repeat P2, the one camera simulated, so that
    readers indexing lines find each matrix where KITTI has it)."""
    matrices = {f"P{camera}": calib.P2 for camera in range(4)}
    matrices |= {"R0_rect": calib.R0_rect, "Tr_velo_to_cam": calib.Tr_velo_to_cam}
    matrices["Tr_imu_to_velo"] = torch.eye(3, 4, dtype=torch.float64)
    return [
        f"{key}: " + " ".join(f"{v:.12e}" for v in m.flatten().tolist())
        for key, m in matrices.items()
    ]
