"""The Amazon book-cover search data (DFKI STI-Dataset, ``Amazon.json``): collages of covers on a
rows × cols grid, the target cover's box, six viewers' pixel fixations. Objects are the grid's cells
(the official binary masks are not in the file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from apps.scanpath.appearance import describe_crops, hashed_descriptors, scene_crops
from apps.scanpath.readers import (
    DESCRIBE_SIZE,
    SkipError,
    finish,
    fixation_points,
    image_size,
    load_json,
    number,
    warn_skipped,
    with_target,
)
from apps.scanpath.scenes import Scanpath, Scene, SearchData, cell_index, grid_cells
from core.train.errors import InputError, input_file


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


def amazon_scene(name: str, record: dict, grid: tuple[int, int], images_dir: Path | None) -> Scene:
    """One collage as a Scene of its grid cells; SkipError when it cannot be used."""
    width, height = image_size(record.get("size"))
    boxes, cells = grid_boxes(width, height, grid)
    box = amazon_target_box(record.get("ground_truth"), width, height)
    target = int(
        cell_index(grid_cells(((box[:2] + box[2:]) / 2)[None], width, height, grid), grid)[0]
    )
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
        objects=cell_index(cells, grid),
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
