"""Slides → feature files: the h5 layout, failures recorded per slide, resuming."""

from __future__ import annotations

import logging
import shutil

import h5py
import numpy as np
import openslide
import pytest
import tifffile

from apps.wsi.extractors import ColourTexture
from apps.wsi.preprocess import PreprocessReport, feature_file, preprocess_slides
from core.train.errors import InputError
from tests.apps.wsi.tiffslides import canvas, write_tiff

BOX = (256, 128, 768, 512)  # tissue on level-0 x 256–768, y 128–512 of a 1024×768 slide


class Recording(ColourTexture):
    """ColourTexture that also keeps the batches it was given."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        self.batches.append(tiles)
        return super().__call__(tiles)


@pytest.fixture
def good(tmp_path):
    """A 1024×768 slide at 0.25 µm/px with tissue on BOX."""
    return write_tiff(tmp_path / "good.tiff", canvas(768, 1024, BOX), mpp=0.25)


def run(slide_paths, out_dir, extractor=None, **options) -> PreprocessReport:
    """preprocess_slides with 32-px tiles at 1 µm/px (128 level-0 px on the 0.25 µm/px slides)."""
    options = {"target_mpp": 1.0, "tile_px": 32, "batch_size": 5} | options
    return preprocess_slides(slide_paths, out_dir, extractor or ColourTexture(), **options)


def test_feature_file_layout(tmp_path, good):
    extractor = Recording()
    report = run([good], tmp_path / "out", extractor)
    path = tmp_path / "out/h5_files/good.h5"
    assert report.written == [path] == [feature_file(tmp_path / "out", good)]
    assert not report.failed and report.tiles == 12 and report.skipped_tiles == 0
    with h5py.File(path, "r") as file:
        assert set(file) == {"features", "coords", "thumbnail"}
        features, coords = file["features"][:], file["coords"][:]
        assert features.dtype == np.float32 and features.shape == (12, ColourTexture.dim)
        assert coords.dtype == np.int64
        expected = [[x, y] for y in range(128, 512, 128) for x in range(256, 768, 128)]
        assert coords.tolist() == expected  # every tile on tissue, row-major
        fingerprint = openslide.OpenSlide(good).properties["openslide.quickhash-1"]
        assert dict(file.attrs) == {
            "tile_size": 128, "tile_px": 32, "target_mpp": 1.0, "min_tissue": 0.5,
            "slide_mpp": 0.25, "extractor": "colour-texture", "slide_path": str(good.resolve()),
            "slide_hash": fingerprint, "skipped_tiles": 0,
        }  # fmt: skip
        thumb = file["thumbnail"]
        assert thumb.dtype == np.uint8 and thumb.shape == (768, 1024, 3)
        assert thumb.attrs["downsample"] == 1.0
    assert [len(batch) for batch in extractor.batches] == [5, 5, 2]
    assert all(batch.shape[1:] == (32, 32, 3) for batch in extractor.batches)
    assert np.allclose(features, ColourTexture()(np.concatenate(extractor.batches)))
    assert not list((tmp_path / "out/h5_files").glob(".*.part"))


def test_bad_slides_are_recorded_and_the_good_one_written(tmp_path, good):
    truncated = tmp_path / "truncated.tiff"
    truncated.write_bytes(good.read_bytes()[:1024])
    random = tmp_path / "random.svs"
    random.write_bytes(np.random.default_rng(0).bytes(5000))
    white = write_tiff(tmp_path / "white.tiff", canvas(768, 1024, (0, 0, 0, 0)), mpp=0.25)
    report = run([truncated, random, good, white, tmp_path / "missing.svs"], tmp_path / "out")
    assert report.written == [tmp_path / "out/h5_files/good.h5"]
    assert set(report.failed) == {str(p) for p in (truncated, random, white)} | {
        str(tmp_path / "missing.svs")
    }
    assert "truncated.tiff" in report.failed[str(truncated)]
    assert "OpenSlide cannot open it" in report.failed[str(random)]
    assert "no tissue found" in report.failed[str(white)]
    assert "no such file" in report.failed[str(tmp_path / "missing.svs")]
    assert "4 failed" in report.summary() and "no tissue found" in report.summary()
    assert sorted(p.name for p in (tmp_path / "out/h5_files").iterdir()) == ["good.h5"]


def test_rerun_reuses_finished_slides(tmp_path, good, caplog):
    other = shutil.copy(good, tmp_path / "other.tiff")
    first = run([good], tmp_path / "out")
    stamp = first.written[0].stat().st_mtime_ns
    second = run([good, other], tmp_path / "out")
    assert second.reused == first.written and second.written == [tmp_path / "out/h5_files/other.h5"]
    assert second.tiles == 12 and first.written[0].stat().st_mtime_ns == stamp
    broken = tmp_path / "out/h5_files/other.h5"
    broken.write_bytes(b"half a file")
    with caplog.at_level(logging.WARNING, logger="apps.wsi"):
        third = run([good, other], tmp_path / "out")
    assert third.written == [broken] and "unreadable feature file" in caplog.text
    fourth = run([good], tmp_path / "out", tile_px=64)
    assert "made with extractor colour-texture, tile_px 32" in fourth.failed[str(good)]


def test_a_changed_slide_is_extracted_again(tmp_path, good, caplog):
    first = run([good], tmp_path / "out")
    with h5py.File(first.written[0]) as file:
        before = file["features"][:]
    write_tiff(good, canvas(768, 1024, BOX, colour=(90, 40, 160)), mpp=0.25)  # same name, new slide
    with caplog.at_level(logging.INFO, logger="apps.wsi"):
        second = run([good], tmp_path / "out")
    assert second.written == first.written and not second.reused
    assert "the slide changed since its features were made" in caplog.text
    with h5py.File(second.written[0]) as file:
        assert not np.allclose(file["features"][:], before)


def test_unreadable_tiles_are_skipped_and_counted(tmp_path, good, monkeypatch):
    read_region = openslide.OpenSlide.read_region

    def flaky(self, location, level, size):
        if location == (384, 256):
            raise openslide.OpenSlideError("TIFFRGBAImageGet failed")
        return read_region(self, location, level, size)

    monkeypatch.setattr(openslide.OpenSlide, "read_region", flaky)
    report = run([good], tmp_path / "out")
    assert report.tiles == 11 and report.skipped_tiles == 1 and not report.failed
    with h5py.File(report.written[0], "r") as file:
        assert [384, 256] not in file["coords"][:].tolist() and len(file["features"]) == 11
        assert file.attrs["skipped_tiles"] == 1


def test_a_corrupt_tile_is_skipped_and_the_slide_reopened(tmp_path, good, monkeypatch):
    # TIFF tile 1 of level 0 (x 256–512, y 0–256) holds two 128-px tissue tiles; OpenSlide
    # errors are sticky, so without reopening every later tile would fail too. The thumbnail
    # comes from level 2, which is intact.
    monkeypatch.setattr("apps.wsi.preprocess.THUMBNAIL_SIDE", 256)
    with tifffile.TiffFile(good) as tiff:
        offset, length = tiff.pages[0].dataoffsets[1], tiff.pages[0].databytecounts[1]
    data = bytearray(good.read_bytes())
    data[offset : offset + length] = b"\xff" * length
    good.write_bytes(bytes(data))
    report = run([good], tmp_path / "out", target_mpp=0.25, tile_px=128)
    assert report.skipped_tiles == 2 and report.tiles == 10 and not report.failed
    with h5py.File(report.written[0], "r") as file:
        assert [256, 128] not in file["coords"][:].tolist()


def test_a_slide_with_no_readable_tile_fails(tmp_path, good, monkeypatch):
    def broken(*args):
        raise openslide.OpenSlideError("TIFFRGBAImageGet failed")

    monkeypatch.setattr("apps.wsi.preprocess.read_tile", broken)
    report = run([good], tmp_path / "out")
    assert "none of its 12 tiles could be read" in report.failed[str(good)]


def test_upsampling_is_logged_once_per_slide(tmp_path, good, caplog):
    with caplog.at_level(logging.WARNING, logger="apps.wsi"):
        report = run([good], tmp_path / "out", target_mpp=0.125, tile_px=64)
    assert report.tiles > 0
    assert caplog.text.count("lacks the requested 0.125 µm/px") == 1
    with h5py.File(report.written[0], "r") as file:
        assert file.attrs["tile_size"] == 32


def test_shared_sample_slides(tmp_path, shared_data):
    small, boxes = shared_data / "wsi/small.svs", shared_data / "wsi/boxes.tiff"
    report = run([small, boxes], tmp_path / "out", target_mpp=352.8 / 2, tile_px=16)
    assert "smaller than one" in report.failed[str(small)]
    with h5py.File(feature_file(tmp_path / "out", boxes), "r") as file:
        assert file.attrs["tile_size"] == 8 and len(file["coords"]) > 100


def test_bad_settings_and_clashing_names(tmp_path, good):
    with pytest.raises(InputError, match="min_tissue"):
        run([good], tmp_path / "out", min_tissue=0)
    clash = tmp_path / "a"
    clash.mkdir()
    with pytest.raises(InputError, match=r"share the feature file good\.h5"):
        run([good, shutil.copy(good, clash / "good.tiff")], tmp_path / "out")
