"""Opening slides, their µm per pixel, thumbnails and tiles read at a target µm per pixel."""

from __future__ import annotations

import logging
import os

import numpy as np
import openslide
import pytest
import tifffile

from apps.wsi.slides import (
    check_tiles,
    level0_tile_size,
    open_slide,
    read_tile,
    slide_mpp,
    thumbnail,
)
from core.train.errors import InputError
from tests.apps.wsi.tiffslides import TISSUE, canvas, write_aperio, write_tiff


@pytest.fixture
def boxed(tmp_path):
    """A 1024×768 slide at 0.25 µm/px with levels ×2 and ×4 and tissue on x 256–768, y 128–512."""
    return write_tiff(tmp_path / "boxed.tiff", canvas(768, 1024, (256, 128, 768, 512)), mpp=0.25)


def test_mpp_from_the_properties(shared_data):
    path = shared_data / "wsi/small.svs"
    assert slide_mpp(open_slide(path), path) == pytest.approx(0.499)
    path = shared_data / "wsi/boxes.tiff"
    assert slide_mpp(open_slide(path), path) == pytest.approx(352.7778, rel=1e-6)


def test_mpp_from_the_objective_power(tmp_path, caplog):
    path = write_aperio(tmp_path / "aperio.svs", canvas(256, 256, (0, 0, 10, 10)), power=40)
    with caplog.at_level(logging.INFO, logger="apps.wsi"):
        assert slide_mpp(open_slide(path), path) == pytest.approx(0.25)
    assert "estimated" in caplog.text


def test_mpp_missing_needs_a_default(tmp_path):
    path = tmp_path / "plain.tiff"
    tifffile.imwrite(path, canvas(256, 256, (0, 0, 10, 10)), tile=(256, 256), photometric="rgb")
    slide = open_slide(path)
    with pytest.raises(InputError, match=r"plain\.tiff.*default_mpp"):
        slide_mpp(slide, path)
    assert slide_mpp(slide, path, default_mpp=0.3) == 0.3


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(os.urandom(4096)), "cannot open"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: None, "no such file"),
    ],
)
def test_bad_files_raise_input_error_naming_them(tmp_path, make, message):
    path = tmp_path / "bad.svs"
    make(path)
    with pytest.raises(InputError, match=f"bad.svs.*{message}"):
        open_slide(path)


def test_truncated_tiff_is_an_input_error(tmp_path, boxed):
    truncated = tmp_path / "truncated.tiff"
    truncated.write_bytes(boxed.read_bytes()[:1024])
    with pytest.raises(InputError, match=r"truncated\.tiff"):
        open_slide(truncated)


def test_tile_size_follows_the_target_mpp(caplog):
    assert level0_tile_size(224, 0.5, 0.25, "s") == 448
    assert level0_tile_size(224, 0.5, 0.499, "s") == 224
    with caplog.at_level(logging.INFO, logger="apps.wsi"):
        assert level0_tile_size(224, 0.5, 1.0, "s") == 112
        assert level0_tile_size(224, 0.5, 0.5027, "t") == 223
    assert [(r.levelname, r.getMessage()[:3]) for r in caplog.records] == [
        ("WARNING", "s: "),
        ("INFO", "t: "),
    ]
    assert "lacks the requested 0.5 µm/px; tiles are upsampled 2×" in caplog.text
    with pytest.raises(InputError, match="under one pixel"):
        level0_tile_size(224, 0.5, 352.8, "s")


def test_tile_has_the_right_size_and_content_from_a_coarser_level(boxed, monkeypatch):
    slide = open_slide(boxed)
    levels = []
    read_region = slide.read_region
    monkeypatch.setattr(slide, "read_region", lambda *a: levels.append(a[1]) or read_region(*a))
    # 32 px at 1 µm/px = 128 level-0 px = level 2 (×4) read as is
    inside = read_tile(slide, (256, 128), level0_tile_size(32, 1.0, 0.25, boxed), 32)
    outside = read_tile(slide, (0, 0), 128, 32)
    edge = read_tile(slide, (192, 128), 128, 32)  # left quarter glass, the rest tissue
    assert inside.shape == (32, 32, 3) and inside.dtype == np.uint8
    assert np.abs(inside.astype(int) - TISSUE).max() <= 1
    assert (outside == 255).all()
    assert (edge[:, :14] == 255).all() and np.abs(edge[:, 18:].astype(int) - TISSUE).max() <= 1
    assert levels == [2, 2, 2]
    # 48 px at 0.75 µm/px = 144 level-0 px: level 1 (×2) then resized
    assert read_tile(slide, (300, 200), 144, 48).shape == (48, 48, 3)
    assert levels[-1] == 1


def test_upsampled_tile_and_white_outside_the_slide(boxed):
    slide = open_slide(boxed)
    tile = read_tile(slide, (1000, 700), 32, 64)  # half outside the 1024×768 slide
    assert tile.shape == (64, 64, 3)
    assert (tile == 255).all()  # glass inside, transparent outside → both white
    assert np.abs(read_tile(slide, (300, 200), 16, 64).astype(int) - TISSUE).max() <= 1


def test_tile_read_failure_is_an_openslide_error(boxed, monkeypatch):
    slide = open_slide(boxed)

    def broken(*args):
        raise openslide.OpenSlideError("TIFFRGBAImageGet failed")

    monkeypatch.setattr(slide, "read_region", broken)
    with pytest.raises(openslide.OpenSlideError):
        read_tile(slide, (0, 0), 64, 64)


def test_thumbnail_and_its_downsample(boxed, shared_data):
    picture, downsample = thumbnail(open_slide(boxed), max_side=256)
    assert picture.shape == (192, 256, 3) and picture.dtype == np.uint8
    assert downsample == pytest.approx(4.0)
    assert np.abs(picture[64, 128].astype(int) - TISSUE).max() <= 1  # level-0 (512, 256)
    assert (picture[10, 10] == 255).all()
    small, downsample = thumbnail(open_slide(shared_data / "wsi/small.svs"))
    assert small.shape == (16, 16, 3) and downsample == 1.0


def test_check_tiles_refuses_bad_batches():
    assert check_tiles(np.zeros((2, 8, 8, 3), np.uint8)).shape == (2, 8, 8, 3)
    for bad in (
        np.zeros((2, 8, 8, 3)),
        np.zeros((8, 8, 3), np.uint8),
        np.zeros((1, 4, 4, 3), np.uint8),
    ):
        with pytest.raises(InputError, match="uint8"):
            check_tiles(bad)
