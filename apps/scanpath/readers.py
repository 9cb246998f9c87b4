"""What every scanpath reader shares, and scenes from a user's own picture.

The readers (:mod:`apps.scanpath.amazon`, :mod:`apps.scanpath.cocosearch`) return a
:class:`SearchData` of objects. A malformed file raises ``InputError`` naming it; a bad scanpath (a
fixation outside the image, no fixations, NaN) or a scene that cannot be used (no size, a target box
matching no object) only skips the scanpaths concerned, each logged with the file, the record and
why, and counted in ``SearchData.skipped``. :func:`scene_from_boxes` and :func:`read_boxes_file`
build a scene from a user's picture and boxes, for prediction.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from apps.scanpath.appearance import describe_crops, open_rgb, scene_crops
from apps.scanpath.scenes import DESCRIPTOR_DIM, Scanpath, Scene, SearchData, grid_cells
from core.train.errors import InputError, input_file

log = logging.getLogger(__name__)

DESCRIBE_SIZE = (32, 20)  # (h, w) crops summarised into descriptors: covers are taller than wide
LENGTH_SIGMAS = 3.0  # the length filter keeps scanpaths within mean ± 3σ of all lengths


class SkipError(Exception):
    """A scanpath (or a whole scene) that cannot be used; the message says why."""


def load_json(path: Path) -> Any:
    """The parsed JSON in ``path``; malformed JSON becomes an InputError with line and column."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(
            f"{path}:{error.lineno}:{error.colno}: malformed JSON ({error.msg})"
        ) from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error.reason})") from None


def warn_skipped(where: str, reason: object, count: int = 1) -> int:
    """Log that ``count`` scanpaths at ``where`` were skipped for ``reason``; returns ``count``."""
    what = "scanpath" if count == 1 else f"{count} scanpaths"
    log.warning("%s: %s; %s skipped", where, reason, what)
    return count


def number(value: Any, what: str) -> float:
    """``value`` as a finite float, else :class:`SkipError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SkipError(f"{what} is {value!r}, not a finite number")
    return float(value)


def image_size(value: Any) -> tuple[int, int]:
    """``(width, height)`` from a ``{"width", "height"}`` object of positive numbers, else SkipError."""
    if not isinstance(value, dict):
        raise SkipError("missing image size")
    width, height = (number(value.get(key), f"image {key}") for key in ("width", "height"))
    if width < 1 or height < 1:
        raise SkipError(f"image size {width:g}×{height:g} is not positive")
    return round(width), round(height)


def fixation_points(xs: Any, ys: Any, width: int, height: int) -> np.ndarray:
    """float32 ``[L, 2]`` fixations from coordinate lists ``xs``, ``ys`` (L ≥ 1), each inside the
    ``width × height`` image (edges included), else SkipError."""
    if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
        raise SkipError("fixation coordinates are not two lists of equal length")
    if not xs:
        raise SkipError("empty scanpath (no fixations)")
    try:
        points = np.array([xs, ys], dtype=np.float64).T
    except (TypeError, ValueError):
        raise SkipError("a fixation coordinate is not a number") from None
    if points.ndim != 2 or not np.isfinite(points).all():
        raise SkipError("NaN or infinite fixation coordinate")
    outside = (points < 0).any(axis=1) | (points[:, 0] > width) | (points[:, 1] > height)
    if outside.any():
        x, y = points[np.argmax(outside)]
        raise SkipError(f"fixation ({x:g}, {y:g}) lies outside the {width}×{height} image")
    return points.astype(np.float32)


def fixated_objects(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """int64 ``[L]``: the object each fixation ``points [L, 2]`` falls on, given ``boxes [N, 4]``:
    the smallest box holding the point, else the box whose centre is nearest (OAT's rule)."""
    x, y = points[:, :1], points[:, 1:]
    inside = (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    smallest = np.argmin(np.where(inside, area, np.inf), axis=1)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    nearest = np.argmin(np.linalg.norm(points[:, None] - centres[None], axis=2), axis=1)
    return np.where(inside.any(axis=1), smallest, nearest).astype(np.int64)


def box_iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """float ``[N]``: intersection over union of each of ``boxes [N, 4]`` with ``box [4]``."""
    low = np.maximum(boxes[:, :2], box[:2])
    high = np.minimum(boxes[:, 2:], box[2:])
    overlap = np.prod(np.clip(high - low, 0, None), axis=1)
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return overlap / (areas + np.prod(box[2:] - box[:2]) - overlap)


def filter_by_length(scanpaths: list[Scanpath], where: str) -> tuple[list[Scanpath], int]:
    """The scanpaths whose length lies within mean ± 3σ (population σ) of all their lengths, and
    how many were dropped (the paper's outlier filter)."""
    if not scanpaths:
        return scanpaths, 0
    lengths = np.array([len(s) for s in scanpaths], dtype=np.float64)
    low = lengths.mean() - LENGTH_SIGMAS * lengths.std()
    high = lengths.mean() + LENGTH_SIGMAS * lengths.std()
    kept = [s for s, n in zip(scanpaths, lengths, strict=True) if low <= n <= high]
    dropped = len(scanpaths) - len(kept)
    log.info(
        "%s: kept scanpath lengths within mean ± 3σ = [%.1f, %.1f]; dropped %d",
        where,
        low,
        high,
        dropped,
    )
    return kept, dropped


def finish(
    path: Path,
    scenes: dict[str, Scene],
    scanpaths: list[Scanpath],
    grid: tuple[int, int],
    skipped: int,
    filter_lengths: bool,
) -> SearchData:
    """The :class:`SearchData`, after the optional length filter; InputError when nothing is left."""
    if filter_lengths:
        scanpaths, dropped = filter_by_length(scanpaths, str(path))
        skipped += dropped
    if not scanpaths:
        raise InputError(f"{path}: no usable scanpath ({skipped} skipped; see the warnings)")
    used = {s.scene for s in scanpaths}
    scenes = {name: scene for name, scene in scenes.items() if name in used}
    return SearchData(scenes=scenes, scanpaths=scanpaths, grid=grid, skipped=skipped)


def with_target(descriptors: np.ndarray, target: int) -> np.ndarray:
    """float32 ``[N + 1, DESCRIPTOR_DIM]``: the objects' descriptors ``[N, DESCRIPTOR_DIM]`` then
    the target object's again, as the target picture's (the searcher was shown that object)."""
    return np.concatenate([descriptors, descriptors[target : target + 1]]).astype(np.float32)


def xywh_box(value: Any, what: str) -> np.ndarray:
    """float64 ``[4]`` ``(x0, y0, x1, y1)`` from ``[x, y, w, h]`` with w, h > 0, else SkipError."""
    if not isinstance(value, list) or len(value) != 4:
        raise SkipError(f"{what} is {value!r:.60}, not [x, y, w, h]")
    x, y, w, h = (number(v, what) for v in value)
    if w <= 0 or h <= 0:
        raise SkipError(f"{what} {value} has no area")
    return np.array([x, y, x + w, y + h])


def scene_from_boxes(
    image_path: str | Path,
    boxes: np.ndarray,
    target: int,
    grid: tuple[int, int],
    target_image: str | Path | None = None,
) -> Scene:
    """A Scene for predicting on a user's picture and its object ``boxes [N, 4]`` (pixels,
    ``(x0, y0, x1, y1)``); descriptors are read from the crops (the target's from
    ``target_image`` when given, else from the target object)."""
    image_path = Path(image_path)
    picture = open_rgb(image_path)
    boxes = np.asarray(boxes, dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) == 0:
        raise InputError(f"{image_path}: boxes must be [N, 4] with N ≥ 1, got {boxes.shape}")
    if not np.isfinite(boxes).all() or (boxes[:, 2:] <= boxes[:, :2]).any():
        raise InputError(f"{image_path}: every box needs finite x0 < x1 and y0 < y1")
    if not 0 <= target < len(boxes):
        raise InputError(f"{image_path}: target {target} is not one of the {len(boxes)} boxes")
    scene = Scene(
        name=image_path.name,
        width=picture.width,
        height=picture.height,
        boxes=boxes,
        cells=grid_cells((boxes[:, :2] + boxes[:, 2:]) / 2, picture.width, picture.height, grid),
        target=int(target),
        descriptors=np.zeros((len(boxes) + 1, DESCRIPTOR_DIM), dtype=np.float32),
        image=image_path,
        target_image=None if target_image is None else Path(target_image),
    )
    scene.descriptors = describe_crops(scene_crops(scene, DESCRIBE_SIZE))
    return scene


def read_boxes_file(path: str | Path, image_path: str | Path, grid: tuple[int, int]) -> Scene:
    """A Scene for predicting on ``image_path`` from a boxes file ``{"boxes": [[x, y, w, h], ...],
    "target": index}`` (COCO-style pixel boxes; the target indexes ``boxes``)."""
    path = input_file(path, 'the boxes JSON ({"boxes": [[x, y, w, h], ...], "target": index})')
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("boxes"), list):
        raise InputError(f"{path}: expected an object with a 'boxes' list of [x, y, w, h]")
    target = data.get("target")
    if isinstance(target, bool) or not isinstance(target, int):
        raise InputError(f"{path}: 'target' must be the index of the target's box, got {target!r}")
    try:
        boxes = [xywh_box(box, f"box {index}") for index, box in enumerate(data["boxes"])]
    except SkipError as reason:
        raise InputError(f"{path}: {reason}") from None
    return scene_from_boxes(image_path, np.array(boxes).reshape(-1, 4), target, grid)
