"""A spinning multi-beam LiDAR ray-cast against boxes and a ground plane (the simulator's sensor).

Every ray is tested against the boxes its azimuth and elevation could reach (a conservative
superset from each box's corners) with the slab method in the box's own frame, and against the
ground plane; the nearest surface wins, so occlusion is real. numpy throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from apps.pointcloud.boxes import box_corners_bev

SENSOR_HEIGHT = 1.73  # metres above the ground (KITTI's mounting height)


@dataclass(frozen=True)
class Sensor:
    """A spinning multi-beam LiDAR at the origin; elevations in degrees, top beam first."""

    beams: int = 32
    top: float = 2.0
    bottom: float = -24.8
    azimuth_steps: int = 1440
    max_range: float = 70.0
    range_noise: float = 0.02
    dropout: float = 0.05

    def __post_init__(self) -> None:
        if self.beams < 2 or self.azimuth_steps < 1 or self.top <= self.bottom:
            raise ValueError(f"{self}: need ≥ 2 beams, ≥ 1 azimuth step and top above bottom")

    def directions(self) -> np.ndarray:
        """Unit ray directions ``[beams · azimuth_steps, 3]``; ray ``beam · azimuth_steps + step``."""
        elevation = np.radians(np.linspace(self.top, self.bottom, self.beams))[:, None]
        azimuth = 2 * math.pi * np.arange(self.azimuth_steps) / self.azimuth_steps
        x, y = np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth)
        return np.stack([x, y, np.broadcast_to(np.sin(elevation), x.shape)], -1).reshape(-1, 3)


def cast_rays(
    sensor: Sensor, boxes: np.ndarray, slopes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sensor's rays against ``boxes [B, 7]`` (none may hold the origin) and the ground: the
    distance to the nearest surface ``[R]`` (inf: nothing within range), what it is ``[R]`` (box
    index; B for the ground or nothing) and how many rays cross each box within range ``[B]``."""
    directions = sensor.directions()
    ray, box = _candidate_pairs(sensor, boxes)
    entry = _slab_entry(directions[ray], boxes[box])
    entry[entry > sensor.max_range] = np.inf
    nearest = np.full(len(directions), np.inf)
    np.minimum.at(nearest, ray, entry)
    hit = np.full(len(directions), len(boxes))
    won = np.isfinite(entry) & (entry == nearest[ray])
    hit[ray[won]] = box[won]
    ground = _ground_distance(directions, slopes)
    ground[ground > sensor.max_range] = np.inf
    hit[ground < nearest] = len(boxes)
    crossing = np.bincount(box[np.isfinite(entry)], minlength=len(boxes))
    return np.minimum(nearest, ground), hit, crossing


def _ground_distance(directions: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    """Distance ``[R]`` along each ray to the ground plane (inf for rays that never reach it)."""
    descent = directions[:, 2] + directions[:, :2] @ slopes
    safe = np.where(descent < 0, descent, -1.0)
    return np.where(descent < 0, -SENSOR_HEIGHT / safe, np.inf)


def _candidate_pairs(sensor: Sensor, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ray ``[P]``, box ``[P]``): each box with the rays inside its azimuth and elevation span (a
    conservative superset of the rays that can hit it)."""
    corners = box_corners_bev(torch.from_numpy(boxes)).numpy()  # [B, 4, 2]
    step = 2 * math.pi / sensor.azimuth_steps
    centre = np.arctan2(boxes[:, 1], boxes[:, 0])
    offset = np.arctan2(corners[..., 1], corners[..., 0]) - centre[:, None]
    offset = np.remainder(offset + math.pi, 2 * math.pi) - math.pi
    first_step = np.ceil((centre + offset.min(1)) / step - 1e-9).astype(np.int64)
    steps = np.floor((centre + offset.max(1)) / step + 1e-9).astype(np.int64) - first_step + 1

    near, far = _bev_distance(boxes), np.linalg.norm(corners, axis=-1).max(1)
    top, bottom = boxes[:, 2] + boxes[:, 5] / 2, boxes[:, 2] - boxes[:, 5] / 2
    highest = np.degrees(np.arctan2(top, np.where(top > 0, near, far)))
    lowest = np.degrees(np.arctan2(bottom, np.where(bottom < 0, near, far)))
    spacing = (sensor.top - sensor.bottom) / (sensor.beams - 1)
    first_beam = np.clip(np.ceil((sensor.top - highest) / spacing - 1e-9), 0, sensor.beams)
    last_beam = np.clip(np.floor((sensor.top - lowest) / spacing + 1e-9), -1, sensor.beams - 1)
    beams = np.maximum(last_beam - first_beam + 1, 0).astype(np.int64)

    counts = np.maximum(steps, 0) * beams
    box = np.repeat(np.arange(len(boxes)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    azimuth = (first_step[box] + local // beams[box]) % sensor.azimuth_steps
    beam = first_beam.astype(np.int64)[box] + local % beams[box]
    return beam * sensor.azimuth_steps + azimuth, box


def _to_box_frame(vectors: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Vectors ``[P, 3]`` rotated by −``yaw [P]`` about z, into the boxes' own frames."""
    cos, sin = np.cos(yaw), np.sin(yaw)
    x, y = vectors[:, 0], vectors[:, 1]
    return np.stack([x * cos + y * sin, y * cos - x * sin, vectors[:, 2]], -1)


def _bev_distance(boxes: np.ndarray) -> np.ndarray:
    """Horizontal distance ``[B]`` from the origin to each box's footprint."""
    origin = _to_box_frame(-boxes[:, :3], boxes[:, 6])[:, :2]
    return np.linalg.norm(np.maximum(np.abs(origin) - boxes[:, 3:5] / 2, 0.0), axis=-1)


def _slab_entry(directions: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Distance ``[P]`` at which rays from the origin along ``directions [P, 3]`` enter ``boxes
    [P, 7]`` (slab method in each box's frame); inf on a miss."""
    origin = _to_box_frame(-boxes[:, :3], boxes[:, 6])
    direction = _to_box_frame(directions, boxes[:, 6])
    direction = np.where(np.abs(direction) < 1e-12, 1e-12, direction)
    half = boxes[:, 3:6] / 2
    low, high = (-half - origin) / direction, (half - origin) / direction
    enter = np.minimum(low, high).max(1)
    leave = np.maximum(low, high).min(1)
    return np.where((enter <= leave) & (enter > 0), enter, np.inf)
