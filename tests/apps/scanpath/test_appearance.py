"""Crops and descriptors: drawing and summarising agree, crops cut the right pixels, hashed looks
are stable."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from apps.scanpath.appearance import (
    crop_objects,
    describe_crops,
    hashed_descriptors,
    render_crops,
    scene_crops,
)
from apps.scanpath.scenes import DESCRIPTOR_DIM, Scene
from core.train.errors import InputError


def test_render_then_describe_gives_the_descriptors_back():
    descriptors = np.random.default_rng(0).random((5, DESCRIPTOR_DIM)).astype(np.float32)
    crops = render_crops(descriptors, (30, 17))
    assert crops.shape == (5, 3, 30, 17) and crops.dtype == np.uint8
    np.testing.assert_allclose(describe_crops(crops), descriptors, atol=1 / 255)


def test_rendered_bands_run_top_to_bottom():
    descriptors = np.zeros((1, DESCRIPTOR_DIM), dtype=np.float32)
    descriptors[0, 9:12] = 1.0  # the bottom band white, the rest black
    crop = render_crops(descriptors, (8, 4))[0]
    assert (crop[:, :6] == 0).all() and (crop[:, 6:] == 255).all()


@pytest.fixture
def picture(tmp_path):
    """A 100 × 60 grey PNG with a red rectangle at x 10–40, y 20–50 and a blue one at x 60–90."""
    pixels = np.full((60, 100, 3), 128, dtype=np.uint8)
    pixels[20:50, 10:40] = (255, 0, 0)
    pixels[5:55, 60:90] = (0, 0, 255)
    path = tmp_path / "display.png"
    Image.fromarray(pixels).save(path)
    return path


def test_crop_objects_cuts_the_boxes(picture):
    boxes = np.array([[12, 22, 38, 48], [62, 10, 88, 50]], dtype=np.float32)
    crops = crop_objects(picture, boxes, (16, 8))
    assert crops.shape == (2, 3, 16, 8) and crops.dtype == np.uint8
    np.testing.assert_array_equal(crops[0].reshape(3, -1).mean(1), [255, 0, 0])
    np.testing.assert_array_equal(crops[1].reshape(3, -1).mean(1), [0, 0, 255])


def test_crop_objects_refuses_a_file_that_is_no_picture(tmp_path):
    path = tmp_path / "display.png"
    path.write_text("not a picture")
    with pytest.raises(InputError, match=r"display\.png"):
        crop_objects(path, np.array([[0, 0, 5, 5]]), (8, 8))


def make_scene(descriptors: np.ndarray, image=None, target_image=None) -> Scene:
    boxes = np.array([[12, 22, 38, 48], [62, 10, 88, 50]], dtype=np.float32)
    cells = np.array([[0, 0], [0, 1]])
    return Scene("d", 100, 60, boxes, cells, 1, descriptors, image, target_image)


def test_scene_crops_from_the_picture_end_with_the_target(picture, tmp_path):
    crops = scene_crops(make_scene(np.zeros((3, DESCRIPTOR_DIM)), picture), (16, 8))
    assert crops.shape == (3, 3, 16, 8)
    np.testing.assert_array_equal(crops[2], crops[1])  # the target object's crop
    target = tmp_path / "target.png"
    Image.fromarray(np.full((30, 20, 3), (0, 200, 0), dtype=np.uint8)).save(target)
    crops = scene_crops(make_scene(np.zeros((3, DESCRIPTOR_DIM)), picture, target), (16, 8))
    np.testing.assert_array_equal(crops[2].reshape(3, -1).mean(1), [0, 200, 0])


def test_scene_crops_without_a_picture_are_drawn_from_the_descriptors():
    descriptors = np.random.default_rng(1).random((3, DESCRIPTOR_DIM)).astype(np.float32)
    crops = scene_crops(make_scene(descriptors), (12, 6))
    np.testing.assert_allclose(describe_crops(crops), descriptors, atol=1 / 255)


def test_hashed_descriptors_are_stable_and_differ_per_key():
    first = hashed_descriptors(["a", "b", "a"])
    assert first.shape == (3, DESCRIPTOR_DIM) and first.dtype == np.float32
    assert first.min() >= 0 and first.max() <= 1
    np.testing.assert_array_equal(first[0], first[2])
    assert np.abs(first[0] - first[1]).max() > 0.05
    np.testing.assert_array_equal(hashed_descriptors(["b"]), first[1:2])
    assert not np.allclose(hashed_descriptors(["a"], seed=1), first[:1])
