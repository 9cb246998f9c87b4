"""The built-in synthetic slides: pyramidal TIFFs OpenSlide reads with the right levels, mpp and
pixels; H&E-like pictures whose planted tumour regions lie in tissue and look different; a set
on disk that is deterministic, cached, and made again when its arguments change."""

from __future__ import annotations

import itertools
import json
import logging
import os

import numpy as np
import openslide
import pytest
import tifffile

from apps.wsi.histology import Region, synthetic_slide
from apps.wsi.pyramid import write_pyramidal_tiff
from apps.wsi.synthetic import SyntheticSet, ensure_synthetic, read_regions
from core.train import InputError

HEIGHT, WIDTH = 768, 1024
SET_SHAPE = {"height": 192, "width": 256}  # small slides: a set of them is quick to make


@pytest.fixture(scope="module")
def tumour_slide() -> tuple[np.ndarray, list[Region]]:
    return synthetic_slide(np.random.default_rng(7), HEIGHT, WIDTH, tumour=True, n_regions=(2, 3))


@pytest.fixture(scope="module")
def normal_slide() -> tuple[np.ndarray, list[Region]]:
    return synthetic_slide(np.random.default_rng(8), HEIGHT, WIDTH, tumour=False)


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """float [H / factor, W / factor, 3]: the mean of each factor × factor block."""
    h, w = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[: h * factor, : w * factor].reshape(h, factor, w, factor, 3)
    return blocks.astype(float).mean(axis=(1, 3))


def read(slide: openslide.OpenSlide, x: int, y: int, level: int, size: int) -> np.ndarray:
    """float [size, size, 3] RGB of ``slide`` at ``level``, the corner (x, y) in level-0 px."""
    return np.asarray(slide.read_region((x, y), level, (size, size)).convert("RGB"), dtype=float)


def tissue_mask(image: np.ndarray) -> np.ndarray:
    """bool [H, W]: not near-white."""
    return image.min(axis=-1) < 225


def blueness(rgb: np.ndarray) -> float:
    """Mean blue over red of float [N, 3] pixels: high where hematoxylin is."""
    return float((rgb[:, 2] - rgb[:, 0]).mean())


def dark_share(rgb: np.ndarray) -> float:
    """The share of float [N, 3] pixels dark enough to be nuclei."""
    return float((rgb.sum(axis=1) < 450).mean())


# --- pyramidal TIFF -----------------------------------------------------------------------------


def test_openslide_reads_levels_mpp_and_pixels(tmp_path, tumour_slide):
    image = tumour_slide[0]
    path = tmp_path / "slide.tiff"
    write_pyramidal_tiff(path, image, mpp=0.25, tile=256, min_size=256)
    with openslide.OpenSlide(path) as slide:
        assert slide.properties[openslide.PROPERTY_NAME_VENDOR] == "generic-tiff"
        assert slide.level_count == 4
        assert slide.level_dimensions == ((1024, 768), (512, 384), (256, 192), (128, 96))
        assert slide.level_downsamples == pytest.approx((1, 2, 4, 8))
        assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.25, 1e-3)
        assert float(slide.properties[openslide.PROPERTY_NAME_MPP_Y]) == pytest.approx(0.25, 1e-3)
        for x, y in [(0, 0), (600, 400)]:  # a blank corner and a stretch of tissue
            error = np.abs(read(slide, x, y, 0, 256) - image[y : y + 256, x : x + 256])
            assert error.mean() < 4.0  # JPEG's loss
        assert read(slide, 600, 400, 0, 256).std() > 10  # the tissue is really there
        reduced = read(slide, 256, 128, 1, 192)  # level-1 pixels (128, 64) onwards
        halved = block_mean(image, 2)
        assert np.abs(reduced - halved[64 : 64 + 192, 128 : 128 + 192]).mean() < 4.0
        assert np.abs(reduced - halved[68 : 68 + 192, 132 : 132 + 192]).mean() > 6.0


def test_every_level_is_a_tiled_ifd_with_its_own_resolution(tmp_path, tumour_slide):
    path = tmp_path / "slide.tiff"
    write_pyramidal_tiff(path, tumour_slide[0], mpp=0.5, tile=128, min_size=256)
    with tifffile.TiffFile(path) as tiff:
        pages = list(tiff.pages)
        assert [page.shape for page in pages] == [
            (768, 1024, 3),
            (384, 512, 3),
            (192, 256, 3),
            (96, 128, 3),
        ]
        assert [page.subfiletype for page in pages] == [0, 1, 1, 1]
        assert all(page.is_tiled and page.tilewidth == page.tilelength == 128 for page in pages)
        for level, page in enumerate(pages):
            numerator, denominator = page.tags["XResolution"].value
            assert numerator / denominator == pytest.approx(2e4 / 2**level)  # pixels per cm
            assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER


def test_odd_sides_round_down_and_small_images_keep_one_level(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (750, 1001, 3), dtype=np.uint8)
    path = tmp_path / "odd.tiff"
    write_pyramidal_tiff(path, image, mpp=0.5, min_size=256, compression="zlib")
    with openslide.OpenSlide(path) as slide:
        assert slide.level_dimensions == ((1001, 750), (500, 375), (250, 187))
        assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.5, 1e-3)
        halved = np.asarray(slide.read_region((0, 0), 1, (500, 375)).convert("RGB"), dtype=float)
        np.testing.assert_allclose(halved, np.floor(block_mean(image, 2) + 0.5), atol=0)
    write_pyramidal_tiff(path, image[:200, :300], mpp=0.5, min_size=512, compression="zlib")
    with openslide.OpenSlide(path) as slide:
        assert slide.level_dimensions == ((300, 200),)


@pytest.mark.parametrize("compression", ["zlib", "adobe_deflate", "lzw", "zstd", "none"])
def test_lossless_compressions_read_back_exactly(tmp_path, compression):
    image = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    path = tmp_path / f"{compression}.tiff"
    write_pyramidal_tiff(path, image, mpp=1.0, tile=128, min_size=256, compression=compression)
    with openslide.OpenSlide(path) as slide:
        assert slide.level_count == 2
        pixels = np.asarray(slide.read_region((0, 0), 0, (400, 300)).convert("RGB"))
    np.testing.assert_array_equal(pixels, image)


@pytest.mark.parametrize(
    ("image", "options", "expected"),
    [
        (np.zeros((64, 64, 3), np.float32), {}, "a uint8 .H, W, 3. image"),
        (np.zeros((64, 64), np.uint8), {}, "a uint8 .H, W, 3. image"),
        (np.zeros((64, 64, 3), np.uint8), {"mpp": 0.0}, "positive mpp"),
        (np.zeros((64, 64, 3), np.uint8), {"tile": 100}, "multiple of 16"),
        (np.zeros((64, 64, 3), np.uint8), {"compression": "webp"}, "compression"),
    ],
)
def test_bad_tiff_arguments_name_the_file(tmp_path, image, options, expected):
    path = tmp_path / "bad.tiff"
    with pytest.raises(InputError, match=expected) as caught:
        write_pyramidal_tiff(path, image, **{"mpp": 0.5, **options})
    assert str(path) in str(caught.value)


# --- one slide ----------------------------------------------------------------------------------


def test_slide_is_white_background_with_tissue(normal_slide):
    image, regions = normal_slide
    assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
    assert regions == []
    tissue = tissue_mask(image)
    assert 0.25 < tissue.mean() < 0.65
    background = image[~tissue].astype(float)
    np.testing.assert_allclose(background.mean(axis=0), 240, atol=3)
    assert background.std(axis=0).max() < 4
    pink = image[tissue].astype(float).mean(axis=0)
    assert pink[0] > pink[2] > pink[1]  # eosin: red over blue over green


def test_tumour_regions_lie_in_tissue_within_the_asked_sizes(tumour_slide):
    image, regions = tumour_slide
    assert 2 <= len(regions) <= 3
    tissue = tissue_mask(image)
    ys, xs = np.indices(tissue.shape)
    for region in regions:
        assert 0.04 * HEIGHT <= region.radius <= 0.08 * HEIGHT
        inside = region.contains(xs, ys)
        assert tissue[inside].mean() > 0.99


@pytest.mark.parametrize("seed", range(4))
def test_crowded_tumour_regions_stay_apart_and_in_tissue(seed):
    rng = np.random.default_rng(seed)
    image, regions = synthetic_slide(
        rng, 384, 512, True, n_regions=(4, 4), region_radius=(0.1, 0.12)
    )
    assert len(regions) == 4
    for a, b in itertools.combinations(regions, 2):
        assert np.hypot(a.x - b.x, a.y - b.y) >= a.radius + b.radius
    ys, xs = np.indices(image.shape[:2])
    inside = np.any([region.contains(xs, ys) for region in regions], axis=0)
    assert tissue_mask(image)[inside].mean() > 0.97


def test_tumour_tissue_is_darker_and_more_purple_than_normal_tissue(tumour_slide, normal_slide):
    image, regions = tumour_slide
    ys, xs = np.indices(image.shape[:2])
    tumour = np.any([region.contains(xs, ys) for region in regions], axis=0)
    normal = tissue_mask(normal_slide[0])
    tumour_rgb = image[tumour].astype(float)
    normal_rgb = normal_slide[0][normal].astype(float)
    assert tumour_rgb.mean() < normal_rgb.mean() - 15
    assert blueness(tumour_rgb) > blueness(normal_rgb) + 10
    assert dark_share(tumour_rgb) > 3 * dark_share(normal_rgb)
    assert tumour.sum() < 0.2 * tissue_mask(image).sum()  # a few % of the tissue, not all of it


def test_same_generator_state_same_slide():
    first = synthetic_slide(np.random.default_rng(3), 256, 320, tumour=True)
    again = synthetic_slide(np.random.default_rng(3), 256, 320, tumour=True)
    other = synthetic_slide(np.random.default_rng(4), 256, 320, tumour=True)
    np.testing.assert_array_equal(first[0], again[0])
    assert first[1] == again[1]
    assert not np.array_equal(first[0], other[0])


def test_region_contains_points_within_its_radius():
    region = Region(x=10.0, y=20.0, radius=5.0)
    xs, ys = np.array([10, 15, 14, 16]), np.array([20, 20, 24, 20])
    np.testing.assert_array_equal(region.contains(xs, ys), [True, True, False, False])


def test_bad_slide_arguments_raise():
    with pytest.raises(InputError, match="at least 64"):
        synthetic_slide(np.random.default_rng(0), 32, 320, tumour=False)
    with pytest.raises(InputError, match="n_regions"):
        synthetic_slide(np.random.default_rng(0), 256, 320, tumour=True, n_regions=(3, 1))


# --- a set on disk ------------------------------------------------------------------------------


OLD_NS = 10**18  # 2001: a file modified since was written again


def age(found: SyntheticSet) -> None:
    """Date every file in the set's folder back to OLD_NS, so a rewrite shows however coarse the
    file system's clock."""
    for path in found.folder.iterdir():
        os.utime(path, ns=(OLD_NS, OLD_NS))


def rewritten(found: SyntheticSet) -> set[str]:
    """The names of the files in the set's folder written since :func:`age`."""
    return {p.name for p in found.folder.iterdir() if p.stat().st_mtime_ns != OLD_NS}


def test_set_has_labels_regions_and_slides(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="apps.wsi"):
        found = ensure_synthetic(tmp_path / "set", n_slides=5, tumour_fraction=0.4, **SET_SHAPE)
    assert [path.name for path in found.slides] == [f"slide_{i:03d}.tiff" for i in range(5)]
    assert all(path.is_file() for path in found.slides)
    lines = found.labels_file.read_text().splitlines()
    assert lines[0] == "case_id,slide_id,label"
    rows = [line.split(",") for line in lines[1:]]
    assert [row[:2] for row in rows] == [[f"case_{i:03d}", f"slide_{i:03d}"] for i in range(5)]
    labels = {slide: label for _, slide, label in rows}
    assert sorted(labels.values()) == ["normal"] * 3 + ["tumour"] * 2
    regions = found.regions()
    assert regions.keys() == labels.keys()
    for slide, label in labels.items():
        assert (len(regions[slide]) > 0) == (label == "tumour")
    assert json.loads(found.regions_file.read_text())["slide_000"] == [
        [r.x, r.y, r.radius] for r in regions["slide_000"]
    ]
    assert "generated 5 synthetic slides" in caplog.text and str(found.folder) in caplog.text
    with openslide.OpenSlide(found.slides[0]) as slide:
        assert slide.dimensions == (256, 192)


def test_set_is_deterministic_for_a_seed(tmp_path):
    first = ensure_synthetic(tmp_path / "a", n_slides=3, seed=5, **SET_SHAPE)
    again = ensure_synthetic(tmp_path / "b", n_slides=3, seed=5, **SET_SHAPE)
    other = ensure_synthetic(tmp_path / "c", n_slides=3, seed=6, **SET_SHAPE)
    for name in ["labels.csv", "regions.json", "slide_000.tiff", "slide_002.tiff"]:
        assert (first.folder / name).read_bytes() == (again.folder / name).read_bytes()
    assert (first.folder / "slide_000.tiff").read_bytes() != (
        other.folder / "slide_000.tiff"
    ).read_bytes()


def test_set_is_cached_and_made_again_when_arguments_change(tmp_path):
    folder = tmp_path / "set"
    found = ensure_synthetic(folder, n_slides=3, **SET_SHAPE)
    labels = found.labels_file.read_bytes()
    age(found)
    assert ensure_synthetic(folder, n_slides=3, **SET_SHAPE) == found
    assert rewritten(found) == set()
    ensure_synthetic(folder, n_slides=2, seed=1, **SET_SHAPE)
    assert rewritten(found) == {
        "slide_000.tiff",
        "slide_001.tiff",
        "labels.csv",
        "regions.json",
        "synthetic.json",
    }
    assert not (folder / "slide_002.tiff").exists()  # the new set has no such slide
    assert found.labels_file.read_bytes() != labels
    assert json.loads((folder / "synthetic.json").read_text())["seed"] == 1


def test_interrupted_set_is_made_again(tmp_path):
    found = ensure_synthetic(tmp_path / "set", n_slides=2, **SET_SHAPE)
    (found.folder / "synthetic.json").unlink()  # as if stopped before the manifest was written
    age(found)
    ensure_synthetic(found.folder, n_slides=2, **SET_SHAPE)
    assert {"slide_000.tiff", "slide_001.tiff", "synthetic.json"} <= rewritten(found)
    found.slides[1].unlink()  # a slide lost since
    ensure_synthetic(found.folder, n_slides=2, **SET_SHAPE)
    assert found.slides[1].is_file()
    assert not list(found.folder.glob(".*.part"))


@pytest.mark.parametrize(
    ("options", "expected"),
    [({"n_slides": 0}, "n_slides"), ({"tumour_fraction": 1.5}, "tumour_fraction")],
)
def test_bad_set_arguments_name_the_folder(tmp_path, options, expected):
    with pytest.raises(InputError, match=expected) as caught:
        ensure_synthetic(tmp_path, **options)
    assert str(tmp_path) in str(caught.value)


def test_malformed_regions_file_names_the_file(tmp_path):
    path = tmp_path / "regions.json"
    path.write_text('{"slide_000": [[1, 2]]}')
    with pytest.raises(InputError, match="x, y, radius") as caught:
        read_regions(path)
    assert str(path) in str(caught.value)
    path.write_text('{"s": [[1, 2, 3.5]], "t": []}')
    assert read_regions(path) == {"s": [Region(1.0, 2.0, 3.5)], "t": []}
