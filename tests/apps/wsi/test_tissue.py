"""Tissue masks from thumbnails and the tile grid over them."""

from __future__ import annotations

import numpy as np
import pytest

from apps.wsi.slides import open_slide, thumbnail
from apps.wsi.tissue import otsu_threshold, saturation, tile_grid, tissue_fractions, tissue_mask
from tests.apps.wsi.tiffslides import canvas


def test_saturation_of_grey_and_pure_colours():
    pixels = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [200, 100, 100]]], np.uint8)
    assert saturation(pixels).tolist() == [[0, 0, 255, 128]]


def test_otsu_splits_two_clusters():
    rng = np.random.default_rng(0)
    low = np.clip(rng.normal(20, 5, 5000), 0, 255).astype(np.uint8)
    high = np.clip(rng.normal(150, 10, 2000), 0, 255).astype(np.uint8)
    threshold = otsu_threshold(np.concatenate([low, high]))
    assert low.max() <= threshold < high.min()
    skewed = np.concatenate([np.full(900, 10), np.full(100, 60), np.full(1000, 200)]).astype(
        np.uint8
    )
    assert 60 <= otsu_threshold(skewed) < 200  # the middle cluster goes with the nearer one
    assert otsu_threshold(np.full(100, 7, np.uint8)) == 0


def test_mask_finds_the_tissue_rectangle():
    picture = canvas(100, 160, (40, 20, 120, 70))
    rng = np.random.default_rng(0)
    picture = np.clip(picture + rng.normal(0, 3, picture.shape), 0, 255).astype(np.uint8)
    picture[5, 5] = (150, 40, 120)  # a coloured speck on the glass
    mask = tissue_mask(picture)
    expected = np.zeros((100, 160), bool)
    expected[20:70, 40:120] = True
    assert (mask == expected).mean() > 0.995
    assert not mask[5, 5]


def test_mask_leaves_out_white_black_and_grey():
    picture = canvas(60, 60, (0, 0, 30, 60))
    picture[:, 30:45] = 10  # black: pen or border
    picture[:, 45:] = (200, 200, 205)  # grey glass
    mask = tissue_mask(picture)
    assert mask[:, 2:28].all() and not mask[:, 32:].any()


def test_blank_thumbnail_has_no_tissue():
    assert not tissue_mask(np.full((50, 80, 3), 250, np.uint8)).any()


def test_tissue_touching_the_border_keeps_it():
    mask = tissue_mask(canvas(40, 40, (0, 0, 40, 40)))
    assert mask.all()


def test_grid_keeps_tiles_on_tissue_in_row_major_order():
    # level-0 1600×1000, mask at downsample 10; tissue on level-0 x 400–1200, y 200–700
    mask = np.zeros((100, 160), bool)
    mask[20:70, 40:120] = True
    coords = tile_grid((1600, 1000), mask, 10.0, 100, min_tissue=0.5)
    assert coords.dtype == np.int64 and coords.shape[1] == 2
    assert len(coords) == 8 * 5
    assert coords[:, 0].min() == 400 and coords[:, 0].max() == 1100
    assert coords[:, 1].min() == 200 and coords[:, 1].max() == 600
    keys = coords[:, 1] * 10_000 + coords[:, 0]
    assert (np.diff(keys) > 0).all()
    for x, y in coords:  # each tile lies on tissue
        assert mask[y // 10 : (y + 100) // 10, x // 10 : (x + 100) // 10].mean() >= 0.5


def test_grid_threshold_on_partly_covered_tiles():
    mask = np.zeros((10, 10), bool)
    mask[:, :3] = True  # tile 0 (mask cols 0–4) is 60% tissue
    fractions = tissue_fractions((100, 100), mask, 10.0, 50)
    assert fractions.tolist() == [[0.6, 0.0], [0.6, 0.0]]
    assert tile_grid((100, 100), mask, 10.0, 50, 0.6).tolist() == [[0, 0], [0, 50]]
    assert len(tile_grid((100, 100), mask, 10.0, 50, 0.61)) == 0


def test_grid_with_tiles_smaller_than_a_mask_pixel():
    mask = np.zeros((4, 4), bool)
    mask[1, 2] = True
    coords = tile_grid((400, 400), mask, 100.0, 50)
    assert coords.tolist() == [[200, 100], [250, 100], [200, 150], [250, 150]]


def test_grid_of_a_slide_smaller_than_a_tile_is_empty():
    assert tile_grid((16, 16), np.ones((16, 16), bool), 1.0, 224).shape == (0, 2)


def test_real_slide_boxes_are_tissue(shared_data):
    picture, downsample = thumbnail(open_slide(shared_data / "wsi/boxes.tiff"))
    mask = tissue_mask(picture)
    assert picture.shape == (250, 300, 3) and downsample == pytest.approx(1.0)
    assert mask[100, 100] and mask[200, 250] and mask[50, 100]  # blue, green, red
    assert not mask[10, 10] and not mask[240, 20]
    coords = tile_grid((300, 250), mask, downsample, 32, min_tissue=0.9)
    assert len(coords) > 0
    for x, y in coords:
        assert mask[y : y + 32, x : x + 32].mean() >= 0.9
