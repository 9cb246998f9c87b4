"""The built-in simulator: files the COCO-style reader accepts, reproducible, written once, and
searches with human-like statistics (learnable structure)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from apps.scanpath.cocosearch import read_coco_search
from apps.scanpath.scenes import Scene, SearchData
from apps.scanpath.simulate import HEIGHT, WIDTH, ensure_simulated, prototypes


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> SearchData:
    """200 displays × 3 viewers, read back through the COCO-Search18 reader."""
    root = tmp_path_factory.mktemp("sim")
    return read_coco_search(*ensure_simulated(root, 200, 3, seed=5, progress=False), grid=(6, 10))


def test_files_are_written_and_read_back(tmp_path):
    fixations, objects = ensure_simulated(tmp_path, 12, 2, seed=0, grid=(4, 5), progress=False)
    assert fixations == tmp_path / "simulated_12_2_0_4x5" / "fixations.json"
    assert objects.parent == fixations.parent and objects.name == "objects.json"
    records = json.loads(fixations.read_text())
    assert len(records) == 24 and all(r["condition"] == "present" for r in records)
    data = read_coco_search(fixations, objects, grid=(4, 5))
    assert len(data.scenes) == 12 and len(data.scanpaths) == 24 and data.skipped == 0
    for scene in data.scenes.values():
        assert len(scene) >= 8 and (scene.width, scene.height) == (WIDTH, HEIGHT)
        assert scene.cells.max(0).tolist() <= [3, 4]
    durations = np.concatenate([s.durations for s in data.scanpaths])
    assert durations.min() >= 200 and durations.max() <= 400


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    first = ensure_simulated(tmp_path / "a", 10, 2, seed=3, progress=False)
    again = ensure_simulated(tmp_path / "b", 10, 2, seed=3, progress=False)
    other = ensure_simulated(tmp_path / "c", 10, 2, seed=4, progress=False)
    for one, two, three in zip(first, again, other, strict=True):
        assert one.read_bytes() == two.read_bytes() != three.read_bytes()


def test_second_call_does_not_rewrite(tmp_path):
    paths = ensure_simulated(tmp_path, 5, 1, seed=0, progress=False)
    stamps = [p.stat().st_mtime_ns for p in paths]
    assert ensure_simulated(tmp_path, 5, 1, seed=0, progress=False) == paths
    assert [p.stat().st_mtime_ns for p in paths] == stamps


def test_prototypes_have_confusable_pairs():
    looks = prototypes()
    gaps = np.abs(looks[:, None] - looks[None]).mean(2)
    assert looks.shape == (8, 12) and looks.min() >= 0 and looks.max() <= 1
    close = (gaps < 0.1) & ~np.eye(8, dtype=bool)
    assert close.sum() // 2 == 3 and gaps[~close & ~np.eye(8, dtype=bool)].min() >= 0.2


def target_alike(scene: Scene) -> np.ndarray:
    """bool ``[N]``: the objects that look almost like the target picture."""
    return np.abs(scene.descriptors[:-1] - scene.descriptors[-1]).mean(1) < 0.1


def test_searches_look_human(simulated):
    paths = simulated.scanpaths
    lengths = np.array([len(p) for p in paths])
    assert 3 <= lengths.mean() <= 25
    found = np.mean([p.objects[-1] == simulated.scenes[p.scene].target for p in paths])
    assert found > 0.6
    refixations = sum(int((p.objects[1:] == p.objects[:-1]).sum()) for p in paths)
    revisits = sum(len(p) - len(np.unique(p.objects)) for p in paths) - refixations
    assert 0 < refixations < 0.2 * lengths.sum() and 0 < revisits < 0.3 * lengths.sum()
    # search is guided: fixations land on target look-alikes more often than such objects occur
    alike = {name: target_alike(scene) for name, scene in simulated.scenes.items()}
    share = np.mean(np.concatenate([alike[p.scene][p.objects] for p in paths]))
    base = np.mean([a.mean() for a in alike.values()])
    assert share > 2 * base


def test_first_fixation_is_the_object_nearest_the_centre(simulated):
    for path in simulated.scanpaths:
        centres = simulated.scenes[path.scene].centres
        nearest = np.argmin(np.linalg.norm(centres - [WIDTH / 2, HEIGHT / 2], axis=1))
        assert path.objects[0] == nearest
