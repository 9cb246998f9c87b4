"""COCO-Search18-style fixation records (``name``, ``subject``, ``task``, ``bbox``, ``X``, ``Y``,
``T``) with the objects of each image in a separate JSON file (the built-in simulator writes this
format too)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from apps.scanpath.appearance import hashed_descriptors
from apps.scanpath.readers import (
    SkipError,
    box_iou,
    finish,
    fixated_objects,
    fixation_points,
    image_size,
    load_json,
    number,
    warn_skipped,
    with_target,
    xywh_box,
)
from apps.scanpath.scenes import DESCRIPTOR_DIM, Scanpath, Scene, SearchData, grid_cells
from core.train.errors import InputError, input_file

log = logging.getLogger(__name__)
TARGET_IOU = 0.5  # a record's target box must overlap one object at least this much


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
