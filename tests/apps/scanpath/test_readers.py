"""Readers: the real Amazon sample reads as the paper sets it up; fixations land on the right objects;
bad input is refused (malformed files) or skipped, counted and logged (bad scanpaths and scenes)."""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from apps.scanpath.amazon import read_amazon
from apps.scanpath.appearance import hashed_descriptors
from apps.scanpath.cocosearch import read_coco_search
from apps.scanpath.readers import fixated_objects, read_boxes_file, scene_from_boxes
from apps.scanpath.scenes import DESCRIPTOR_DIM, SearchData
from core.train.errors import InputError


@cache
def amazon(path: Path) -> SearchData:
    return read_amazon(path)


@pytest.fixture
def amazon_file(shared_data) -> Path:
    return shared_data / "scanpath" / "Amazon.json"


def test_amazon_sample_has_the_papers_layout(amazon_file):
    data = amazon(amazon_file)
    assert data.grid == (6, 14) and len(data.scenes) == 100
    for scene in data.scenes.values():
        assert len(scene) == 84 and scene.descriptors.shape == (85, DESCRIPTOR_DIM)
        assert scene.cells.tolist() == [[r, c] for r in range(6) for c in range(14)]
        np.testing.assert_array_equal(scene.descriptors[-1], scene.descriptors[scene.target])
    assert all(isinstance(s.viewer, str) and np.isnan(s.durations).all() for s in data.scanpaths)


def test_amazon_target_is_the_cell_of_the_ground_truth_box(amazon_file):
    # 1.jpg is 2559 × 1600; its box x 2184–2339, y 22–262 has its centre at (2261.5, 142):
    # column 2261.5 / (2559 / 14) = 12.37 → 12, row 142 / (1600 / 6) = 0.53 → 0
    scene = amazon(amazon_file).scenes["1.jpg"]
    assert (scene.width, scene.height) == (2559, 1600)
    assert scene.target == 0 * 14 + 12
    np.testing.assert_allclose(scene.boxes[12], [12 * 2559 / 14, 0, 13 * 2559 / 14, 1600 / 6])


def test_amazon_length_filter_keeps_mean_plus_minus_three_sigma(amazon_file):
    raw = json.loads(amazon_file.read_text())
    lengths = np.array([len(f) for record in raw.values() for f in record["fixations"].values()])
    low, high = lengths.mean() - 3 * lengths.std(), lengths.mean() + 3 * lengths.std()
    kept = int(((lengths >= low) & (lengths <= high)).sum())
    data = amazon(amazon_file)
    assert kept < len(lengths)  # the filter has something to do on the sample
    assert len(data.scanpaths) == kept and data.skipped == len(lengths) - kept
    unfiltered = read_amazon(amazon_file, filter_lengths=False)
    assert len(unfiltered.scanpaths) == len(lengths) and unfiltered.skipped == 0


def test_amazon_fixations_map_to_the_cells_holding_them(amazon_file):
    data = amazon(amazon_file)
    raw = json.loads(amazon_file.read_text())
    for path in data.scanpaths:
        scene = data.scenes[path.scene]
        points = np.array(raw[path.scene]["fixations"][path.viewer], dtype=np.float64)
        np.testing.assert_array_equal(path.fixations, points)
        col = np.minimum((points[:, 0] * 14 // scene.width).astype(int), 13)
        row = np.minimum((points[:, 1] * 6 // scene.height).astype(int), 5)
        np.testing.assert_array_equal(path.objects, row * 14 + col)


# ------------------------------------------------------------------------------ hand-made files


def write_json(tmp_path: Path, name: str, value: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(value))
    return path


def collage(fixations: dict, size: dict | None = None) -> dict:
    """An Amazon record on a 200 × 100 display; its target box centre (150, 75) is in cell (1, 1)."""
    return {
        "fixations": fixations,
        "ground_truth": [{"xmin": 120, "xmax": 180, "ymin": 60, "ymax": 90}],
        "size": size or {"width": 200, "height": 100},
        "target": "target_0.jpg",
    }


def test_amazon_fixations_on_a_two_by_two_grid(tmp_path):
    points = [[10, 10], [150, 10], [10, 90], [199, 99], [200, 100], [0, 0], [100, 50]]
    path = write_json(tmp_path, "a.json", {"c.jpg": collage({"v": points})})
    data = read_amazon(path, grid=(2, 2), filter_lengths=False)
    scene, [scanpath] = data.scenes["c.jpg"], data.scanpaths
    assert scene.target == 3 and scene.cells.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert scanpath.objects.tolist() == [0, 1, 2, 3, 3, 0, 3]
    keys = ["c.jpg/0/0", "c.jpg/0/1", "c.jpg/1/0", "c.jpg/1/1"]
    np.testing.assert_array_equal(scene.descriptors[:4], hashed_descriptors(keys))


def test_amazon_descriptors_from_the_pictures(tmp_path):
    pixels = np.zeros((100, 200, 3), dtype=np.uint8)
    pixels[:50, :100] = (255, 0, 0)  # cell (0, 0) red, the rest black
    (tmp_path / "target").mkdir()
    Image.fromarray(pixels).save(tmp_path / "c.jpg", format="PNG")
    green = np.full((40, 30, 3), (0, 255, 0), dtype=np.uint8)
    Image.fromarray(green).save(tmp_path / "target" / "target_0.jpg", format="PNG")
    path = write_json(tmp_path, "a.json", {"c.jpg": collage({"v": [[10, 10]]})})
    scene = read_amazon(path, tmp_path, grid=(2, 2), filter_lengths=False).scenes["c.jpg"]
    assert scene.image == tmp_path / "c.jpg"
    assert scene.target_image == tmp_path / "target" / "target_0.jpg"
    np.testing.assert_allclose(scene.descriptors[0], [1, 0, 0] * 4, atol=0.02)
    np.testing.assert_allclose(scene.descriptors[1:4], 0, atol=0.02)
    np.testing.assert_allclose(scene.descriptors[4], [0, 1, 0] * 4, atol=0.02)


def test_amazon_bad_scanpaths_are_skipped_counted_and_logged(tmp_path, caplog):
    viewers = {"1": [[10, 10], [250, 40]], "2": [], "3": [[10, float("nan")]], "4": [[5, 5]]}
    path = write_json(tmp_path, "a.json", {"c.jpg": collage(viewers)})
    with caplog.at_level(logging.WARNING):
        data = read_amazon(path, grid=(2, 2), filter_lengths=False)
    assert [s.viewer for s in data.scanpaths] == ["4"] and data.skipped == 3
    text = caplog.text
    assert "a.json: collage 'c.jpg', viewer '1': fixation (250, 40) lies outside" in text
    assert "viewer '2': empty scanpath" in text and "viewer '3': NaN" in text


def test_amazon_unusable_scene_skips_its_scanpaths(tmp_path, caplog):
    records = {
        "bad.jpg": collage({"1": [[5, 5]], "2": [[6, 6]]}, size={"width": 200}),
        "good.jpg": collage({"1": [[5, 5]]}),
    }
    path = write_json(tmp_path, "a.json", records)
    with caplog.at_level(logging.WARNING):
        data = read_amazon(path, grid=(2, 2), filter_lengths=False)
    assert list(data.scenes) == ["good.jpg"] and data.skipped == 2
    assert "collage 'bad.jpg'" in caplog.text and "2 scanpaths skipped" in caplog.text


def test_malformed_json_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"c.jpg": {\n  "fixations": [\n')
    with pytest.raises(InputError, match=r"broken\.json:3:"):
        read_amazon(path)


def test_wrong_top_level_is_refused(tmp_path):
    with pytest.raises(InputError, match="keyed by collage"):
        read_amazon(write_json(tmp_path, "a.json", [1, 2]))
    objects = write_json(tmp_path, "objects.json", {})
    with pytest.raises(InputError, match="list of records"):
        read_coco_search(write_json(tmp_path, "f.json", {"a": 1}), objects)


def test_nothing_left_is_an_error(tmp_path):
    path = write_json(tmp_path, "a.json", {"c.jpg": collage({"1": []})})
    with pytest.raises(InputError, match="no usable scanpath"):
        read_amazon(path, grid=(2, 2))


def test_fixated_objects_inside_smallest_then_nearest_centre():
    boxes = np.array([[0, 0, 100, 100], [40, 40, 60, 60], [200, 0, 300, 100]], dtype=np.float32)
    points = np.array([[10, 10], [50, 50], [60, 60], [180, 50], [120, 50], [250, 100]])
    assert fixated_objects(points, boxes).tolist() == [0, 1, 1, 2, 0, 2]


# ----------------------------------------------------------------------------------- COCO-style

OBJECTS = {
    "img.jpg": {
        "width": 200,
        "height": 100,
        "objects": [
            {"bbox": [10, 10, 40, 30], "category": "cup"},
            {"bbox": [120, 50, 60, 40], "category": "bottle", "descriptor": [0.5] * 12},
            {"bbox": [60, 10, 40, 30], "category": "cup"},
        ],
    }
}


def record(subject: int, xs: list, ys: list, **changes: object) -> dict:
    """A target-present record searching for the bottle (object 1) on img.jpg."""
    base = {"name": "img.jpg", "subject": subject, "task": "bottle", "condition": "present"}
    base |= {"bbox": [121, 51, 58, 38], "X": xs, "Y": ys, "T": [200.0] * len(xs)}
    return base | changes


def test_coco_records_read(tmp_path):
    records = [
        record(1, [20, 150, 100], [20, 70, 25]),
        record(2, [70], [20], T=None),
        record(3, [5], [5], condition="absent"),
    ]
    del records[1]["T"]
    objects = write_json(tmp_path, "objects.json", OBJECTS)
    data = read_coco_search(write_json(tmp_path, "f.json", records), objects, grid=(2, 4))
    scene = data.scenes["img.jpg:bottle"]
    assert data.skipped == 1 and [s.viewer for s in data.scanpaths] == ["1", "2"]
    assert scene.target == 1 and scene.cells.tolist() == [[0, 0], [1, 3], [0, 1]]
    np.testing.assert_allclose(scene.boxes[1], [120, 50, 180, 90])
    # the given descriptor; hashed by category otherwise (both cups alike); the target's repeated
    np.testing.assert_array_equal(scene.descriptors[1], np.full(12, 0.5, dtype=np.float32))
    np.testing.assert_array_equal(scene.descriptors[0], hashed_descriptors(["cup"])[0])
    np.testing.assert_array_equal(scene.descriptors[0], scene.descriptors[2])
    np.testing.assert_array_equal(scene.descriptors[3], scene.descriptors[1])
    first, second = data.scanpaths
    assert first.objects.tolist() == [0, 1, 2] and first.durations.tolist() == [200.0] * 3
    assert second.objects.tolist() == [2] and np.isnan(second.durations).all()


def test_coco_bad_records_are_skipped_counted_and_logged(tmp_path, caplog):
    records = [
        record(1, [20], [20]),
        record(2, [20], [20], bbox=[0, 60, 10, 10]),
        record(3, [20, 210], [20, 20]),
        record(4, [], []),
        record(5, [20], [float("nan")]),
        record(6, [20], [20], name="other.jpg"),
    ]
    objects = write_json(tmp_path, "objects.json", OBJECTS)
    with caplog.at_level(logging.WARNING):
        data = read_coco_search(write_json(tmp_path, "f.json", records), objects)
    assert [s.viewer for s in data.scanpaths] == ["1"] and data.skipped == 5
    lines = caplog.text
    assert "f.json: record 1 (image 'img.jpg', subject 2, task 'bottle')" in lines
    assert "target box [0.0, 60.0, 10.0, 70.0] missing from the objects" in lines
    assert "record 2" in lines and "fixation (210, 20) lies outside the 200×100 image" in lines
    assert "record 3" in lines and "empty scanpath" in lines
    assert "record 4" in lines and "NaN" in lines
    assert "record 5" in lines and "image missing from the objects file" in lines


def test_scene_from_boxes_reads_the_picture(tmp_path):
    pixels = np.zeros((60, 100, 3), dtype=np.uint8)
    pixels[:, 50:] = (0, 255, 0)
    image = tmp_path / "mine.png"
    Image.fromarray(pixels).save(image)
    scene = scene_from_boxes(image, np.array([[5, 5, 45, 45], [55, 5, 95, 45]]), 1, (2, 2))
    assert (scene.width, scene.height, scene.target) == (100, 60, 1)
    assert scene.cells.tolist() == [[0, 0], [0, 1]]
    np.testing.assert_allclose(scene.descriptors[1], [0, 1, 0] * 4, atol=1e-6)
    np.testing.assert_allclose(scene.descriptors[0], 0, atol=1e-6)
    np.testing.assert_array_equal(scene.descriptors[2], scene.descriptors[1])
    boxes = write_json(
        tmp_path, "boxes.json", {"boxes": [[5, 5, 40, 40], [55, 5, 40, 40]], "target": 1}
    )
    np.testing.assert_allclose(read_boxes_file(boxes, image, (2, 2)).boxes, scene.boxes)
    with pytest.raises(InputError, match="target 2"):
        scene_from_boxes(image, np.array([[5, 5, 45, 55]]), 2, (2, 2))
