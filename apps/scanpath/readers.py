"""Readers for visual-search scanpath data, each returning a :class:`SearchData` of objects.

* The Amazon book-cover search data (DFKI STI-Dataset, ``Amazon.json``): collages of covers on a
  rows × cols grid, the target cover's box, six viewers' pixel fixations. Objects are the grid's
  cells (the official binary masks are not in the file).
* COCO-Search18-style fixation records (``name``, ``subject``, ``task``, ``bbox``, ``X``, ``Y``,
  ``T``) with the objects of each image in a separate JSON file (the built-in simulator writes this
  format too).
* A user's own picture and boxes, for prediction (:func:`scene_from_boxes`).

A malformed file raises ``InputError`` naming it; a bad scanpath (a fixation outside the image, no
fixations, NaN) or a scene that cannot be used (no size, a target box matching no object) only skips
the scanpaths concerned, each logged with the file, the record and why, and counted in
``SearchData.skipped``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from apps.scanpath.appearance import describe_crops, hashed_descriptors, open_rgb, scene_crops
from apps.scanpath.scenes import DESCRIPTOR_DIM, Scanpath, Scene, SearchData, grid_cells
from core.train.errors import InputError, input_file

log = logging.getLogger(__name__)

DESCRIBE_SIZE = (32, 20)  # (h, w) crops summarised into descriptors: covers are taller than wide
TARGET_IOU = 0.5  # a record's target box must overlap one object at least this much
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


# ------------------------------------------------------------------------------------- Amazon


def grid_boxes(width: int, height: int, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The ``rows × cols`` cells tiling a ``width × height`` display, row-major: boxes float32
    ``[R·C, 4]`` and their ``(row, col)`` int64 ``[R·C, 2]``."""
    rows, cols = grid
    r, c = np.divmod(np.arange(rows * cols), cols)
    boxes = np.stack(
        [c * width / cols, r * height / rows, (c + 1) * width / cols, (r + 1) * height / rows],
        axis=1,
    )
    return boxes.astype(np.float32), np.stack([r, c], axis=1).astype(np.int64)


def amazon_target_box(value: Any, width: int, height: int) -> np.ndarray:
    """float64 ``[4]``: the first ground-truth box ``(x0, y0, x1, y1)``; SkipError when missing, empty or
    with its centre outside the image."""
    if not isinstance(value, list) or not value or not isinstance(value[0], dict):
        raise SkipError("missing ground-truth target box")
    truth = value[0]
    box = np.array(
        [number(truth.get(k), f"ground truth {k}") for k in ("xmin", "ymin", "xmax", "ymax")]
    )
    if box[2] <= box[0] or box[3] <= box[1]:
        raise SkipError(f"ground-truth box {box.tolist()} is empty")
    centre = (box[:2] + box[2:]) / 2
    if (centre < 0).any() or centre[0] > width or centre[1] > height:
        raise SkipError(f"ground-truth box {box.tolist()} lies outside the {width}×{height} image")
    return box


def amazon_pictures(
    images_dir: Path | None, name: str, target: Any
) -> tuple[Path | None, Path | None]:
    """The collage's picture and the target's in ``images_dir`` (``target/<target>`` or
    ``<target>``), each None when absent."""
    if images_dir is None or not (images_dir / name).is_file():
        return None, None
    if isinstance(target, str):
        for candidate in (images_dir / "target" / target, images_dir / target):
            if candidate.is_file():
                return images_dir / name, candidate
    return images_dir / name, None


def with_target(descriptors: np.ndarray, target: int) -> np.ndarray:
    """float32 ``[N + 1, DESCRIPTOR_DIM]``: the objects' descriptors ``[N, DESCRIPTOR_DIM]`` then
    the target object's again, as the target picture's (the searcher was shown that object)."""
    return np.concatenate([descriptors, descriptors[target : target + 1]]).astype(np.float32)


def amazon_scene(name: str, record: dict, grid: tuple[int, int], images_dir: Path | None) -> Scene:
    """One collage as a Scene of its grid cells; SkipError when it cannot be used."""
    width, height = image_size(record.get("size"))
    boxes, cells = grid_boxes(width, height, grid)
    box = amazon_target_box(record.get("ground_truth"), width, height)
    row, col = grid_cells(((box[:2] + box[2:]) / 2)[None], width, height, grid)[0]
    target = int(row * grid[1] + col)
    image, target_image = amazon_pictures(images_dir, name, record.get("target"))
    descriptors = hashed_descriptors([f"{name}/{r}/{c}" for r, c in cells.tolist()])
    scene = Scene(
        name=name,
        width=width,
        height=height,
        boxes=boxes,
        cells=cells,
        target=target,
        descriptors=with_target(descriptors, target),
        image=image,
        target_image=target_image,
    )
    if image is not None:
        scene.descriptors = describe_crops(scene_crops(scene, DESCRIBE_SIZE))
    return scene


def amazon_scanpath(scene: Scene, viewer: str, points: Any, grid: tuple[int, int]) -> Scanpath:
    """One viewer's ``[[x, y], ...]`` on a collage, fixations mapped to the cells holding them."""
    if not isinstance(points, list) or not all(isinstance(p, list) and len(p) == 2 for p in points):
        raise SkipError("fixations are not a list of [x, y] pairs")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    xy = fixation_points(xs, ys, scene.width, scene.height)
    cells = grid_cells(xy, scene.width, scene.height, grid)
    return Scanpath(
        scene=scene.name,
        viewer=viewer,
        objects=cells[:, 0] * grid[1] + cells[:, 1],
        fixations=xy,
        durations=np.full(len(xy), np.nan, dtype=np.float32),
    )


def read_amazon(
    path: str | Path,
    images_dir: str | Path | None = None,
    grid: tuple[int, int] = (6, 14),
    filter_lengths: bool = True,
) -> SearchData:
    """The Amazon book-cover search data (``Amazon.json``): one Scene per collage with the
    ``grid`` cells as its objects (row-major), one Scanpath per viewer.

    Descriptors come from the collage pictures when ``images_dir`` holds them, else are hashed
    per cell; durations are NaN (the file has none). ``filter_lengths`` drops scanpaths whose
    length lies outside mean ± 3σ, as the paper does."""
    path = input_file(path, "the Amazon book-cover search fixations (Amazon.json)")
    folder = None if images_dir is None else Path(images_dir)
    data = load_json(path)
    if not isinstance(data, dict):
        raise InputError(
            f"{path}: expected a JSON object keyed by collage image name, "
            f"got a {type(data).__name__}"
        )
    scenes: dict[str, Scene] = {}
    scanpaths: list[Scanpath] = []
    skipped = 0
    for name, record in data.items():
        where = f"{path}: collage {name!r}"
        if not isinstance(record, dict) or not isinstance(record.get("fixations"), dict):
            raise InputError(f"{where}: expected an object with 'fixations': {{viewer: [[x, y]]}}")
        viewers = record["fixations"]
        try:
            scene = amazon_scene(name, record, grid, folder)
        except SkipError as reason:
            skipped += warn_skipped(where, reason, len(viewers))
            continue
        scenes[name] = scene
        for viewer, points in viewers.items():
            try:
                scanpaths.append(amazon_scanpath(scene, str(viewer), points, grid))
            except SkipError as reason:
                skipped += warn_skipped(f"{where}, viewer {viewer!r}", reason)
    return finish(path, scenes, scanpaths, grid, skipped, filter_lengths)


# -------------------------------------------------------------------------------- COCO-Search18


def read_objects_file(path: str | Path) -> dict[str, dict]:
    """The objects file ``{image_name: {"width", "height", "objects": [{"bbox": [x, y, w, h],
    "category", "descriptor"?}]}}``, its top level checked (entries are checked per scene)."""
    path = input_file(path, "the objects JSON ({image: {width, height, objects: [...]}})")
    data = load_json(path)
    if not isinstance(data, dict):
        raise InputError(
            f"{path}: expected a JSON object keyed by image name, got a {type(data).__name__}"
        )
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise InputError(f"{path}: image {name!r}: expected an object, got {entry!r:.40}")
    return data


def xywh_box(value: Any, what: str) -> np.ndarray:
    """float64 ``[4]`` ``(x0, y0, x1, y1)`` from ``[x, y, w, h]`` with w, h > 0, else SkipError."""
    if not isinstance(value, list) or len(value) != 4:
        raise SkipError(f"{what} is {value!r:.60}, not [x, y, w, h]")
    x, y, w, h = (number(v, what) for v in value)
    if w <= 0 or h <= 0:
        raise SkipError(f"{what} {value} has no area")
    return np.array([x, y, x + w, y + h])


def array_of(values: list, width: int) -> np.ndarray | None:
    """float64 ``[len(values), width]`` of finite numbers, or None when ``values`` is not that."""
    try:
        array = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if array.shape != (len(values), width) or not np.isfinite(array).all():
        return None
    return array


def object_boxes(items: list[dict]) -> np.ndarray:
    """float32 ``[N, 4]`` ``(x0, y0, x1, y1)`` from the objects' ``bbox`` ``[x, y, w, h]``."""
    boxes = array_of([item.get("bbox") for item in items], 4)
    if boxes is None or (boxes[:, 2:] <= 0).any():
        for index, item in enumerate(items):
            xywh_box(item.get("bbox"), f"object {index} bbox")  # raises, naming the bad one
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1).astype(np.float32)


def unit_rows(values: list, width: int) -> np.ndarray | None:
    """:func:`array_of`, also None when a value lies outside [0, 1]."""
    array = array_of(values, width)
    if array is None or array.min(initial=0) < 0 or array.max(initial=1) > 1:
        return None
    return array


def given_descriptors(values: list, indices: list[int]) -> np.ndarray:
    """float32 ``[K, DESCRIPTOR_DIM]`` from the ``descriptor`` lists of objects ``indices``; each
    must be DESCRIPTOR_DIM numbers in [0, 1], else SkipError naming the first bad object."""
    array = unit_rows(values, DESCRIPTOR_DIM)
    if array is not None:
        return array.astype(np.float32)
    pairs = zip(values, indices, strict=True)
    bad = next(index for value, index in pairs if unit_rows([value], DESCRIPTOR_DIM) is None)
    raise SkipError(f"object {bad}: descriptor is not {DESCRIPTOR_DIM} numbers in [0, 1]")


def object_descriptors(items: list[dict]) -> np.ndarray:
    """float32 ``[N, DESCRIPTOR_DIM]``: each object's ``descriptor`` when given, else one hashed
    from its ``category`` (so objects of one category look alike)."""
    descriptors = np.empty((len(items), DESCRIPTOR_DIM), dtype=np.float32)
    given = [index for index, item in enumerate(items) if "descriptor" in item]
    hashed = [index for index, item in enumerate(items) if "descriptor" not in item]
    if given:
        values = [items[index]["descriptor"] for index in given]
        descriptors[given] = given_descriptors(values, given)
    if hashed:
        categories = sorted({items[index]["category"] for index in hashed})
        looks = dict(zip(categories, hashed_descriptors(categories), strict=True))
        descriptors[hashed] = [looks[items[index]["category"]] for index in hashed]
    return descriptors


def image_objects(entry: dict) -> tuple[int, int, np.ndarray, np.ndarray]:
    """An objects-file entry as ``(width, height, boxes float32 [N, 4], descriptors float32
    [N, DESCRIPTOR_DIM])``; SkipError when it cannot be used."""
    width, height = image_size(entry)
    items = entry.get("objects")
    if not isinstance(items, list) or not items:
        raise SkipError("no objects listed for the image")
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("category"), str):
            raise SkipError(f"object {index} is not an object with a 'category' string")
    return width, height, object_boxes(items), object_descriptors(items)


def coco_scene(
    name: str, task: str, entry: Any, grid: tuple[int, int], target_box: np.ndarray
) -> Scene:
    """The Scene of one (image, task) pair, its target the object best matching ``target_box``."""
    if entry is None:
        raise SkipError("image missing from the objects file")
    width, height, boxes, descriptors = image_objects(entry)
    target = coco_target(boxes, target_box)
    return Scene(
        name=f"{name}:{task}",
        width=width,
        height=height,
        boxes=boxes,
        cells=grid_cells((boxes[:, :2] + boxes[:, 2:]) / 2, width, height, grid),
        target=target,
        descriptors=with_target(descriptors, target),
    )


def coco_target(boxes: np.ndarray, box: np.ndarray) -> int:
    """The object of ``boxes [N, 4]`` best overlapping ``box [4]``; SkipError when its IoU is < 0.5."""
    iou = box_iou(boxes.astype(np.float64), box)
    best = int(np.argmax(iou))
    if iou[best] < TARGET_IOU:
        shown = box.round(1).tolist()
        raise SkipError(f"target box {shown} missing from the objects (best IoU {iou[best]:.2f})")
    return best


def record_label(record: dict) -> str:
    """``" (image '…', subject …, task '…')"`` for the fields a record has, to name it in logs."""
    parts = [
        f"{label} {record[key]!r}"
        for key, label in (("name", "image"), ("subject", "subject"), ("task", "task"))
        if key in record
    ]
    return f" ({', '.join(parts)})" if parts else ""


def coco_scanpath(
    record: dict,
    objects: dict[str, dict],
    scenes: dict[str, Scene],
    grid: tuple[int, int],
) -> Scanpath:
    """One fixation record as a Scanpath, adding its (image, task) Scene to ``scenes`` when new."""
    name, task = record.get("name"), record.get("task")
    if not isinstance(name, str) or not isinstance(task, str) or "subject" not in record:
        raise SkipError("missing 'name', 'task' or 'subject'")
    target_box = xywh_box(record.get("bbox"), "target bbox")
    scene = scenes.get(f"{name}:{task}")
    if scene is None:
        scene = coco_scene(name, task, objects.get(name), grid, target_box)
        scenes[scene.name] = scene
    elif coco_target(scene.boxes, target_box) != scene.target:
        raise SkipError("target box differs from the earlier records of this image and task")
    points = fixation_points(record.get("X"), record.get("Y"), scene.width, scene.height)
    return Scanpath(
        scene=scene.name,
        viewer=str(record["subject"]),
        objects=fixated_objects(points, scene.boxes),
        fixations=points,
        durations=fixation_durations(record.get("T"), len(points)),
    )


def fixation_durations(value: Any, length: int) -> np.ndarray:
    """float32 ``[L]`` durations in ms from the optional ``T`` list (NaN when absent), else SkipError."""
    if value is None:
        return np.full(length, np.nan, dtype=np.float32)
    if not isinstance(value, list) or len(value) != length:
        raise SkipError(f"'T' is not a list of {length} durations")
    durations = np.array([number(t, "a duration") for t in value], dtype=np.float32)
    if (durations < 0).any():
        raise SkipError("negative fixation duration")
    return durations


def read_coco_search(
    fixations_file: str | Path,
    objects_file: str | Path,
    grid: tuple[int, int] = (8, 10),
    filter_lengths: bool = False,
) -> SearchData:
    """COCO-Search18-style fixation records with their images' objects: one Scene per (image,
    task) pair named ``"<image>:<task>"``, one Scanpath per target-present record.

    Fixations map to the smallest object box holding them, else the nearest box centre; the target
    is the object best overlapping the record's ``bbox``; cells come from the object centres on
    the ``grid``."""
    path = input_file(fixations_file, "the COCO-Search18-style fixations JSON (a list of records)")
    records = load_json(path)
    if not isinstance(records, list):
        raise InputError(f"{path}: expected a JSON list of records, got a {type(records).__name__}")
    objects = read_objects_file(objects_file)
    scenes: dict[str, Scene] = {}
    scanpaths: list[Scanpath] = []
    skipped = absent = 0
    for index, record in enumerate(records):
        if isinstance(record, dict) and record.get("condition", "present") != "present":
            absent += 1
            continue
        label = record_label(record) if isinstance(record, dict) else ""
        try:
            if not isinstance(record, dict):
                raise SkipError(f"expected an object, got {record!r:.40}")
            scanpaths.append(coco_scanpath(record, objects, scenes, grid))
        except SkipError as reason:
            skipped += warn_skipped(f"{path}: record {index}{label}", reason)
    if absent:
        log.info("%s: skipped %d target-absent records", path, absent)
    return finish(path, scenes, scanpaths, grid, skipped + absent, filter_lengths)


# ------------------------------------------------------------------------------- user pictures


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
