"""The feature readers (CLAM h5/pt with its dataset CSV, this repository's h5 extras, ACMIL's single
h5) read each layout exactly; bad files raise an InputError naming the file (and line or group),
and slides that cannot be used are counted in a log line while the others still load."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from apps.wsi.readers import (
    class_names,
    read_acmil_h5,
    read_clam_folder,
    read_feature_file,
    read_labels,
)
from core.train.errors import InputError

RNG = np.random.default_rng(0)


def features(n: int, d: int = 8, dtype: type = np.float32) -> np.ndarray:
    return RNG.normal(size=(n, d)).astype(dtype)


def coords(n: int) -> np.ndarray:
    return (np.arange(2 * n).reshape(n, 2) * 256).astype(np.int64)


def write_clam_h5(
    path: Path, feats: np.ndarray, xy: np.ndarray | None = None, **coord_attrs
) -> Path:
    """A CLAM feature h5: ``features`` and ``coords`` (patch attrs on ``coords``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("features", data=feats)
        dataset = handle.create_dataset("coords", data=coords(len(feats)) if xy is None else xy)
        dataset.attrs.update(coord_attrs)
    return path


def write_pt(path: Path, tensor: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tensor, path)
    return path


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def error_at(where: str, message: str) -> str:
    """A pattern for an InputError message starting ``where: `` (``message`` a regex)."""
    return re.escape(f"{where}: ") + message


# --- one CLAM feature file -----------------------------------------------------------------------


def test_clam_h5_round_trips_features_and_coords(tmp_path):
    feats, xy = features(5, dtype=np.float16), coords(5)
    path = write_clam_h5(tmp_path / "slide_1.h5", feats, xy, patch_size=256, patch_level=0)
    bag = read_feature_file(path, label="tumor")
    assert bag.slide_id == "slide_1" and bag.label == "tumor" and len(bag) == 5
    assert bag.features.dtype == np.float32 and np.array_equal(
        bag.features, feats.astype(np.float32)
    )
    assert bag.coords.dtype == np.int64 and np.array_equal(bag.coords, xy)
    assert bag.tile_size == 256 and bag.thumbnail is None and bag.thumbnail_downsample == 1.0


@pytest.mark.parametrize(
    ("attrs", "tile_size"),
    [
        ({"patch_size": 256, "patch_level": 1, "downsample": np.array([4.0, 4.0])}, 1024),
        ({"patch_size": 512, "patch_level": 0}, 512),
        ({"patch_size": 256, "patch_level": 2}, 0),  # the level's downsample is not known
        ({}, 0),
    ],
)
def test_clam_tile_size_comes_from_patch_attrs(tmp_path, attrs, tile_size):
    path = write_clam_h5(tmp_path / "s.h5", features(3), **attrs)
    assert read_feature_file(path).tile_size == tile_size


def test_own_h5_extras_give_tile_size_and_thumbnail(tmp_path):
    feats, xy = features(4), coords(4)
    thumbnail = RNG.integers(0, 256, size=(6, 9, 3), dtype=np.uint8)
    path = write_clam_h5(tmp_path / "own.h5", feats, xy, patch_size=224, patch_level=0)
    with h5py.File(path, "a") as handle:
        handle.attrs.update(tile_size=448, tile_px=224, target_mpp=0.5, slide_mpp=0.25,
                            extractor="resnet50", slide_path="/x/own.svs", skipped_tiles=2)  # fmt: skip
        handle.create_dataset("thumbnail", data=thumbnail).attrs["downsample"] = 64.0
    bag = read_feature_file(path, slide_id="renamed")
    assert bag.slide_id == "renamed" and bag.label is None
    assert np.array_equal(bag.features, feats) and np.array_equal(bag.coords, xy)
    assert bag.tile_size == 448  # the file attr wins over patch_size × downsample
    assert bag.thumbnail.dtype == np.uint8 and np.array_equal(bag.thumbnail, thumbnail)
    assert bag.thumbnail_downsample == 64.0


def test_clam_pt_has_zero_coords(tmp_path):
    tensor = torch.randn(7, 16, dtype=torch.float16)
    bag = read_feature_file(write_pt(tmp_path / "pt_files" / "s9.pt", tensor), label="1")
    assert bag.slide_id == "s9" and bag.label == "1" and bag.tile_size == 0
    assert bag.features.dtype == np.float32
    assert np.array_equal(bag.features, tensor.float().numpy())
    assert bag.coords.dtype == np.int64 and bag.coords.shape == (7, 2) and not bag.coords.any()


def test_empty_bag_is_an_error(tmp_path):
    path = write_clam_h5(tmp_path / "empty.h5", np.zeros((0, 8), np.float32))
    with pytest.raises(InputError, match=error_at(str(path), "no instances")):
        read_feature_file(path)
    pt = write_pt(tmp_path / "empty.pt", torch.zeros(0, 8))
    with pytest.raises(InputError, match=error_at(str(pt), "no instances")):
        read_feature_file(pt)


def test_missing_features_dataset_is_an_error(tmp_path):
    path = tmp_path / "nofeat.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("coords", data=coords(3))
    with pytest.raises(
        InputError, match=error_at(str(path), r"no 'features' dataset \(it holds 'coords'\)")
    ):
        read_feature_file(path)


def test_nan_features_say_how_many_rows(tmp_path):
    feats = features(6)
    feats[1, 3], feats[4, 0] = np.nan, np.inf
    path = write_clam_h5(tmp_path / "nan.h5", feats)
    with pytest.raises(
        InputError, match=error_at(str(path), "2 of 6 rows of 'features' hold NaN or inf")
    ):
        read_feature_file(path)


@pytest.mark.parametrize(
    ("feats", "xy", "message"),
    [
        (features(4)[None], None, r"'features' has shape \[1, 4, 8\], expected \[N, D\]"),
        (features(4), coords(3), r"'coords' has shape \[3, 2\], expected \[4, 2\]"),
        (
            features(4),
            np.zeros((4, 3), np.int64),
            r"'coords' has shape \[4, 3\], expected \[4, 2\]",
        ),
        (np.ones((4, 8), np.int32), None, "'features' holds int32, expected floating-point"),
    ],
)
def test_bad_shapes_and_types_are_errors(tmp_path, feats, xy, message):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("features", data=feats)
        handle.create_dataset("coords", data=coords(4) if xy is None else xy)
    with pytest.raises(InputError, match=error_at(str(path), message)):
        read_feature_file(path)


def test_not_a_feature_file(tmp_path):
    text = write_text(tmp_path / "notes.txt", "hello")
    with pytest.raises(InputError, match=error_at(str(text), "not a feature file")):
        read_feature_file(text)
    fake = write_text(tmp_path / "fake.h5", "not hdf5")
    with pytest.raises(InputError, match=error_at(str(fake), "not an HDF5 file")):
        read_feature_file(fake)
    pt = write_pt(tmp_path / "dict.pt", {"features": torch.zeros(2, 2)})
    with pytest.raises(InputError, match=error_at(str(pt), "holds a dict, expected a tensor")):
        read_feature_file(pt)
    with pytest.raises(InputError, match="no such file"):
        read_feature_file(tmp_path / "absent.h5")


def test_bad_thumbnail_is_an_error(tmp_path):
    path = write_clam_h5(tmp_path / "t.h5", features(2))
    with h5py.File(path, "a") as handle:
        handle.create_dataset("thumbnail", data=np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError, match=error_at(str(path), "'thumbnail' attr 'downsample'")):
        read_feature_file(path)


# --- the labels CSV ------------------------------------------------------------------------------


def test_read_labels_strips_and_keeps_order(tmp_path, caplog):
    path = write_text(
        tmp_path / "labels.csv",
        "case_id, slide_id ,label\np1, s2 , tumor\n\np1,s1,normal\np2,s2,tumor\n",
    )
    with caplog.at_level(logging.WARNING, logger="apps.wsi"):
        assert read_labels(path) == {"s2": "tumor", "s1": "normal"}
    assert "1 rows repeat a slide" in caplog.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("case_id,slide_id\np,s\n", ":1: no label column in the header 'case_id,slide_id'"),
        ("case_id,name,class\np,s,1\n", ":1: no slide_id or label column"),
        ("slide_id,label\ns1,a\ns2,\n", ":3: label missing for slide 's2'"),
        ("slide_id,label\ns1,a\ns1,b\n", ":3: slide 's1' has label 'b', but line 2 gave it 'a'"),
        ("slide_id,label\n,a\n", ":2: slide_id missing"),
        ("case_id,slide_id,label\np\n", ":2: 1 fields, expected at least 3"),
        ("slide_id,label\n", ": no slides under the header"),
    ],
)
def test_read_labels_errors_name_the_line(tmp_path, text, message):
    path = write_text(tmp_path / "labels.csv", text)
    with pytest.raises(InputError, match=re.escape(f"{path}{message}")):
        read_labels(path)


# --- CLAM folders --------------------------------------------------------------------------------


def clam_folder(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """h5 files for s1, s3 and an unlabelled s4; a pt file for s2 (and a shadowed one for s1)."""
    root = tmp_path / "feats"
    made = {name: features(i + 2) for i, name in enumerate(("s1", "s2", "s3", "s4"))}
    for name in ("s1", "s3", "s4"):
        write_clam_h5(root / "h5_files" / f"{name}.h5", made[name], patch_size=256, patch_level=0)
    write_pt(root / "pt_files" / "s2.pt", torch.from_numpy(made["s2"]))
    write_pt(root / "pt_files" / "s1.pt", torch.zeros(1, 8))
    return root, made


def test_clam_folder_reads_labelled_slides_in_csv_order(tmp_path, caplog):
    root, made = clam_folder(tmp_path)
    labels = write_text(
        tmp_path / "labels.csv",
        "case_id,slide_id,label\nc,s3,tumor\nc,s1,normal\nc,gone,normal\nc,s2,tumor\n",
    )
    with caplog.at_level(logging.WARNING, logger="apps.wsi"):
        bags = read_clam_folder(root, labels)
    assert [bag.slide_id for bag in bags] == ["s3", "s1", "s2"]
    assert [bag.label for bag in bags] == ["tumor", "normal", "tumor"]
    for bag in bags:
        assert np.array_equal(bag.features, made[bag.slide_id])  # s1 from h5, not the pt
    assert [bag.tile_size for bag in bags] == [256, 256, 0]
    assert "1 of 4 slides of" in caplog.text and "'gone'" in caplog.text
    assert "1 feature files have no row in" in caplog.text and "'s4'" in caplog.text


def test_clam_folder_with_no_feature_files_is_an_error(tmp_path):
    root, _ = clam_folder(tmp_path)
    labels = write_text(tmp_path / "labels.csv", "slide_id,label\nx,1\ny,0\n")
    with pytest.raises(InputError, match=error_at(str(root), "no feature file for any of the 2")):
        read_clam_folder(root, labels)
    with pytest.raises(InputError, match="no such folder"):
        read_clam_folder(tmp_path / "nowhere", labels)


def test_clam_folder_refuses_a_bad_feature_file(tmp_path):
    root, _ = clam_folder(tmp_path)
    bad = write_clam_h5(root / "h5_files" / "s3.h5", np.zeros((0, 8), np.float32))
    labels = write_text(tmp_path / "labels.csv", "slide_id,label\ns1,a\ns3,b\n")
    with pytest.raises(InputError, match=error_at(str(bad), "no instances")):
        read_clam_folder(root, labels)


# --- ACMIL ---------------------------------------------------------------------------------------


def write_acmil(
    path: Path, slides: dict[str, tuple[np.ndarray, np.ndarray | None, object]]
) -> Path:
    with h5py.File(path, "w") as handle:
        for name, (feats, xy, label) in slides.items():
            group = handle.create_group(name)
            group.create_dataset("feat", data=feats)
            if xy is not None:
                group.create_dataset("coords", data=xy)
            if label is not None:
                group.attrs["label"] = label
    return path


def test_acmil_h5_reads_every_group(tmp_path):
    slides = {
        "normal_001": (features(3), coords(3), 0),
        "tumor_001": (features(5, dtype=np.float16), coords(5), np.int64(1)),
        "test_001": (features(2), None, "1"),
    }
    bags = read_acmil_h5(write_acmil(tmp_path / "camelyon.h5", slides))
    assert sorted(bag.slide_id for bag in bags) == sorted(slides)
    for bag in bags:
        feats, xy, _ = slides[bag.slide_id]
        assert np.array_equal(bag.features, feats.astype(np.float32))
        expected = np.zeros((len(feats), 2), np.int64) if xy is None else xy
        assert bag.coords.dtype == np.int64 and np.array_equal(bag.coords, expected)
    assert {bag.slide_id: bag.label for bag in bags} == {
        "normal_001": "0",
        "tumor_001": "1",
        "test_001": "1",
    }


def test_acmil_errors_name_the_group(tmp_path):
    path = write_acmil(tmp_path / "camelyon.h5", {"a": (features(2), None, 1)})
    with h5py.File(path, "a") as handle:
        handle.create_group("test_001").create_dataset("features", data=features(2))
        handle["test_001"].attrs["label"] = 0
    with pytest.raises(InputError, match=error_at(f"{path}/test_001", "no 'feat' dataset")):
        read_acmil_h5(path)
    unlabelled = write_acmil(
        tmp_path / "u.h5", {"a": (features(2), None, 1), "b": (features(2), None, None)}
    )
    with pytest.raises(InputError, match=error_at(f"{unlabelled}/b", "no 'label' attr")):
        read_acmil_h5(unlabelled)
    empty = write_acmil(
        tmp_path / "e.h5", {"a": (features(2), None, 1), "z": (features(0), None, 0)}
    )
    with pytest.raises(InputError, match=error_at(f"{empty}/z", "no instances")):
        read_acmil_h5(empty)


# --- class names ---------------------------------------------------------------------------------


def test_class_names_sort_numbers_numerically():
    assert class_names(["10", "2", "0", "1", "2"]) == ["0", "1", "2", "10"]
    assert class_names(["tumor", "normal", "tumor"]) == ["normal", "tumor"]
    assert class_names(["b", "3", "a", "-1"]) == ["-1", "3", "a", "b"]
