"""Object crops and their appearance descriptors (see :data:`apps.scanpath.scenes.DESCRIPTOR_DIM`).

A descriptor is the mean colour of four horizontal bands of an object's crop. Crops come from the
display's picture when there is one; otherwise they are drawn from the descriptors (so the model's
CNN always reads pictures), and data sets without pictures get stable pseudo-random descriptors.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from apps.scanpath.scenes import DESCRIPTOR_DIM, Scene
from core.train.errors import InputError, input_file

BANDS = 4
Size = tuple[int, int]  # (height, width) of a crop in pixels


def band_of_rows(height: int) -> np.ndarray:
    """int64 ``[height]``: which of the :data:`BANDS` horizontal bands each pixel row lies in."""
    if height < BANDS:
        raise ValueError(f"crops need at least {BANDS} rows, got {height}")
    return np.arange(height) * BANDS // height


def render_crops(descriptors: np.ndarray, size: Size) -> np.ndarray:
    """uint8 ``[M, 3, h, w]``: each descriptor of ``[M, DESCRIPTOR_DIM]`` (in [0, 1]) drawn as four
    horizontal bands, band ``b`` filled with the RGB colour ``descriptor[3b : 3b + 3]``."""
    height, width = size
    colours = np.asarray(descriptors, dtype=np.float32).reshape(-1, BANDS, 3)
    levels = np.rint(np.clip(colours, 0.0, 1.0) * 255).astype(np.uint8)
    rows = levels[:, band_of_rows(height), :]  # [M, h, 3]
    return np.ascontiguousarray(
        np.broadcast_to(rows.transpose(0, 2, 1)[..., None], (len(levels), 3, height, width))
    )


def describe_crops(crops: np.ndarray) -> np.ndarray:
    """float32 ``[M, DESCRIPTOR_DIM]``: the mean colour (in [0, 1]) of each crop's four horizontal
    bands, top to bottom, for crops uint8 ``[M, 3, h, w]``; the inverse of :func:`render_crops`."""
    height = crops.shape[2]
    row_means = crops.astype(np.float32).mean(axis=3)  # [M, 3, h]
    member = np.eye(BANDS, dtype=np.float32)[band_of_rows(height)]  # [h, BANDS]
    band_means = row_means @ (member / member.sum(axis=0))  # [M, 3, BANDS]
    return (band_means.transpose(0, 2, 1).reshape(len(crops), DESCRIPTOR_DIM) / 255).astype(
        np.float32
    )


def open_rgb(path: str | Path) -> Image.Image:
    """The picture at ``path`` in RGB, refusing a missing or unreadable file with an InputError."""
    path = input_file(path, "an image")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(f"{path}: cannot open as an image ({error})") from None


def cut_crops(image: Image.Image, boxes: np.ndarray, size: Size) -> np.ndarray:
    """uint8 ``[N, 3, h, w]``: the ``(x0, y0, x1, y1)`` pixel ``boxes [N, 4]`` of ``image``, each
    clipped to the picture (at least one pixel wide), cut out (to whole pixels) and resized
    bilinearly to ``size``, so no pixel outside a box bleeds into its crop."""
    height, width = size
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    limits = np.array([image.width, image.height] * 2, dtype=np.float64)
    low = np.clip(boxes[:, :2], 0, limits[:2] - 1)
    high = np.clip(np.maximum(boxes[:, 2:], low + 1), 1, limits[2:])
    crops = [
        np.asarray(
            image.crop((*lo, *hi)).resize((width, height), Image.Resampling.BILINEAR),
            dtype=np.uint8,
        )
        for lo, hi in zip(low.tolist(), high.tolist(), strict=True)
    ]
    if not crops:
        return np.zeros((0, 3, height, width), dtype=np.uint8)
    return np.stack(crops).transpose(0, 3, 1, 2).copy()


def crop_objects(image_path: str | Path, boxes: np.ndarray, size: Size) -> np.ndarray:
    """uint8 ``[N, 3, h, w]``: the picture at ``image_path`` cut at ``boxes [N, 4]`` (pixels)."""
    return cut_crops(open_rgb(image_path), boxes, size)


def scene_crops(scene: Scene, size: Size) -> np.ndarray:
    """uint8 ``[N + 1, 3, h, w]``: the scene's object crops, then the target picture's.

    Cut from ``scene.image`` when set (the target from ``scene.target_image`` when set, else the
    target object's crop); drawn from ``scene.descriptors`` otherwise."""
    if scene.image is None:
        return render_crops(scene.descriptors, size)
    objects = crop_objects(scene.image, scene.boxes, size)
    if scene.target_image is None:
        target = objects[scene.target : scene.target + 1]
    else:
        picture = open_rgb(scene.target_image)
        target = cut_crops(picture, np.array([[0, 0, picture.width, picture.height]]), size)
    return np.concatenate([objects, target])


def hashed_descriptors(keys: list[str], seed: int = 0) -> np.ndarray:
    """float32 ``[len(keys), DESCRIPTOR_DIM]`` in [0, 1]: a fixed pseudo-random look per key (the
    same on every machine and run), for data sets that come without pictures."""
    rows = []
    for key in keys:
        digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
        rows.append(np.random.default_rng(int.from_bytes(digest, "little")).random(DESCRIPTOR_DIM))
    return np.array(rows, dtype=np.float32).reshape(len(keys), DESCRIPTOR_DIM)
