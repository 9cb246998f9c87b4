"""An H&E-like picture of a slide, with planted tumour regions.

A slide is a near-white background with one to three irregular tissue blobs of pink (eosin) stroma,
wavy collagen fibres and scattered small elongated purple (hematoxylin) nuclei, plus now and then a
lymphoid aggregate of small dark round nuclei (present in every class, so darkness alone does not
give a slide away). A tumour slide also holds a few round regions inside the tissue where nuclei are
denser, larger, rounder and darker (hyperchromatic) and the stroma is more basophilic. The regions
are known by construction, so an attention heatmap can be checked against them.

Colours follow Beer–Lambert: every pixel's optical density is the background's plus eosin and
hematoxylin amounts times their stain vectors (Ruifrok & Johnston 2001). Smooth fields (tissue
outline, stroma) are drawn at half resolution and nuclei at full resolution; one lookup table
turns the two stain amounts into RGB, so a 4096 × 3072 slide takes about a second.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from core.train import InputError

log = logging.getLogger("apps.wsi")

BACKGROUND_OD = -math.log(240 / 255)  # a clear glass background of (240, 240, 240)
# stain optical densities per unit amount in (R, G, B): Ruifrok & Johnston's hematoxylin, and an
# eosin as Macenko-style estimates find it on scanned slides (pinker than their purified eosin)
HEMATOXYLIN = np.array([0.65, 0.70, 0.29]) / np.linalg.norm([0.65, 0.70, 0.29])
EOSIN = np.array([0.22, 0.80, 0.56]) / np.linalg.norm([0.22, 0.80, 0.56])
EOSIN_MAX, HEMATOXYLIN_MAX = 1.0, 1.5  # optical densities at the top of the 8-bit stain scales
COARSE = 16  # level-0 pixels per cell of the grid the tissue outline is drawn on
MIN_SIDE = 64

# nuclei, sized for 0.5 µm per pixel: (half-axis range px, minor/major range, stain OD range,
# level-0 px² per nucleus)
STROMA_NUCLEI = ((4.0, 7.0), (0.3, 0.6), (0.45, 0.75), 900.0)
TUMOUR_NUCLEI = ((5.0, 8.5), (0.65, 1.0), (0.85, 1.25), 260.0)
LYMPHOCYTES = ((2.5, 3.5), (0.8, 1.0), (0.9, 1.2), 70.0)
LYMPHOID_RADIUS = (0.015, 0.035)  # of the shorter side
NucleusKind = tuple[tuple[float, float], tuple[float, float], tuple[float, float], float]
STAMPS_PER_KIND = 8
MARGIN = 10  # level-0 px between a nucleus's centre and the picture's edge: its stamp fits


@dataclass(frozen=True)
class Region:
    """A planted circle in level-0 pixels; pixel (row r, column c) sits at (x, y) = (c, r)."""

    x: float
    y: float
    radius: float

    def contains(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Whether each point (xs, ys) (broadcastable arrays, level-0 px) lies in the circle."""
        return (np.asarray(xs) - self.x) ** 2 + (np.asarray(ys) - self.y) ** 2 <= self.radius**2


def synthetic_slide(
    rng: np.random.Generator,
    height: int,
    width: int,
    tumour: bool,
    n_regions: tuple[int, int] = (1, 3),
    region_radius: tuple[float, float] = (0.04, 0.08),
) -> tuple[np.ndarray, list[Region]]:
    """An H&E-like uint8 picture [height, width, 3] and its planted tumour regions.

    A tumour slide holds ``n_regions`` (an inclusive range) circles inside the tissue whose radii
    are fractions ``region_radius`` of the shorter side; a normal slide holds none.
    """
    _check_slide_arguments(height, width, n_regions, region_radius)
    field = _tissue_field(rng, (-(-height // COARSE), -(-width // COARSE)))
    threshold = np.quantile(field, rng.uniform(0.3, 0.6))  # tissue covers 30–60 % of the slide
    tissue = field <= threshold
    short = min(height, width)
    lymphoid = _place(rng, tissue, rng.uniform(*LYMPHOID_RADIUS, rng.integers(0, 3)) * short, [])
    regions = []
    if tumour:
        radii = rng.uniform(*region_radius, rng.integers(n_regions[0], n_regions[1] + 1)) * short
        regions = _place(rng, tissue, radii, lymphoid)
    eosin, hematoxylin, tissue_half = _stroma(rng, field, threshold, (height, width), regions)
    index = _stain_index(eosin, hematoxylin)
    shape = (height, width)
    groups = [(STROMA_NUCLEI, _uniform_centres(rng, STROMA_NUCLEI, shape))]
    groups += [(LYMPHOCYTES, _centres_in(rng, c, LYMPHOCYTES, shape)) for c in lymphoid]
    groups += [(TUMOUR_NUCLEI, _centres_in(rng, r, TUMOUR_NUCLEI, shape)) for r in regions]
    nuclei = [_draw_nuclei(rng, index, _in_tissue(c, tissue_half), kind) for kind, c in groups]
    lookup = _stain_lookup()
    picture = _double(lookup[index], height, width)
    _paint(picture, lookup, nuclei)
    return picture, regions


def _check_slide_arguments(
    height: int, width: int, n_regions: tuple[int, int], region_radius: tuple[float, float]
) -> None:
    if min(height, width) < MIN_SIDE:
        raise InputError(
            f"synthetic slide: expected sides of at least {MIN_SIDE}, got {height}×{width}"
        )
    if not 1 <= n_regions[0] <= n_regions[1]:
        raise InputError(f"synthetic slide: expected 1 <= n_regions low <= high, got {n_regions}")
    if not 0 < region_radius[0] <= region_radius[1] <= 0.25:
        raise InputError(
            f"synthetic slide: expected 0 < region_radius low <= high <= 0.25, got {region_radius}"
        )


def _tissue_field(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """[h, w] float on the coarse grid, low where tissue is: the distance to the nearest of 1–3
    random ellipses, roughened by smooth noise and raised near the slide's edges."""
    h, w = shape
    unit = min(h, w)
    ys, xs = (np.indices(shape) + 0.5) / unit
    distance = np.full(shape, np.inf)
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(0.3, 0.7) * h / unit, rng.uniform(0.3, 0.7) * w / unit
        a, b = rng.uniform(0.15, 0.35), rng.uniform(0.1, 0.25)
        angle = rng.uniform(0, np.pi)
        u = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
        v = (ys - cy) * np.cos(angle) - (xs - cx) * np.sin(angle)
        distance = np.minimum(distance, np.hypot(u / a, v / b))
    edge = np.minimum.reduce([ys, xs, h / unit - ys, w / unit - xs])
    crowding = (np.clip(0.15 - edge, 0, None) / 0.15) ** 2  # keeps tissue off the slide's edges
    return distance + 0.3 * _smooth_noise(rng, shape, 0.04 * unit) + 3.0 * crowding


def _place(
    rng: np.random.Generator, tissue: np.ndarray, radii: np.ndarray, avoid: list[Region]
) -> list[Region]:
    """Circles of ``radii`` (level-0 px) inside ``tissue`` (bool, coarse grid), clear of each other
    and of ``avoid``; where none fits, the roomiest spot with the radius shrunk to fit."""
    depth = ndimage.distance_transform_edt(np.pad(tissue, 1))[1:-1, 1:-1] * COARSE
    ys, xs = (np.indices(tissue.shape) + 0.5) * COARSE
    placed, taken = [], list(avoid)
    for radius in radii:
        room = depth.copy()
        for other in taken:
            room = np.minimum(room, np.hypot(xs - other.x, ys - other.y) - other.radius)
        fits = np.flatnonzero(room >= radius + COARSE)  # a cell of slack: the outline is smoothed
        cell = rng.choice(fits) if fits.size else int(np.argmax(room))
        size = float(radius) if fits.size else max(float(room.flat[cell]), COARSE / 2)
        region = Region(float(xs.flat[cell]), float(ys.flat[cell]), size)
        placed.append(region)
        taken.append(region)
    return placed


def _stroma(
    rng: np.random.Generator,
    field: np.ndarray,
    threshold: float,
    shape: tuple[int, int],
    regions: list[Region],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eosin and hematoxylin optical densities [ceil(H/2), ceil(W/2)] (float32) of the stroma and
    background of a picture of ``shape`` [H, W], and the half-resolution tissue mask (bool):
    tissue is where the coarse ``field``, smoothed up, is at most ``threshold``."""
    half = (-(-shape[0] // 2), -(-shape[1] // 2))
    # the coarse fields, bilinearly to half resolution: tissue outline, stain strength, fibre warp
    noise = [_smooth_noise(rng, field.shape, sigma) for sigma in (4.0, 3.0)]
    smooth = np.stack([field, *noise])
    outline, strength, warp = _to_half(smooth, half)
    inside = outline <= threshold
    ys = np.arange(half[0], dtype=np.float32)[:, None]
    xs = np.arange(half[1], dtype=np.float32)[None, :]
    angle, period = rng.uniform(0, np.pi), rng.uniform(3.0, 5.0)  # wavy fibres, in half-res px
    fibres = np.sin((xs * np.cos(angle) + ys * np.sin(angle)) / period + 2.0 * warp)
    speckle = rng.random(half, dtype=np.float32)
    eosin = inside * (0.4 + 0.05 * strength + 0.05 * fibres + 0.1 * speckle) + 0.015 * speckle
    hematoxylin = inside * (0.04 + 0.03 * speckle)
    for region in regions:  # tumour: a crowded, basophilic stroma
        disc = region.contains(2 * xs + 0.5, 2 * ys + 0.5) & inside  # half-res pixel centres
        eosin[disc] *= 0.8
        hematoxylin[disc] += 0.08
    return eosin, hematoxylin, inside


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """[h, w] unit-variance noise, smooth over ``sigma`` cells."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return noise / (noise.std() + 1e-12)


def _to_half(coarse: np.ndarray, half: tuple[int, int]) -> np.ndarray:
    """[C, h, w] on the coarse grid → [C, *half] float32, bilinear with pixel centres aligned (two
    small matrix products, far faster than scipy's spline zoom)."""
    rows = _linear_interpolation(coarse.shape[1], half[0])
    cols = _linear_interpolation(coarse.shape[2], half[1])
    return rows @ coarse.astype(np.float32) @ cols.T


def _linear_interpolation(n_coarse: int, n_half: int) -> np.ndarray:
    """float32 [n_half, n_coarse]: each half-resolution pixel's weights on the coarse cells, a
    half-resolution pixel spanning 2 level-0 pixels and a coarse cell COARSE."""
    where = np.clip((np.arange(n_half) + 0.5) * (2 / COARSE) - 0.5, 0, n_coarse - 1)
    first = np.floor(where).astype(np.int64)
    second = np.minimum(first + 1, n_coarse - 1)
    weights = np.zeros((n_half, n_coarse), dtype=np.float32)
    weights[np.arange(n_half), first] += 1 - (where - first)
    weights[np.arange(n_half), second] += where - first
    return weights


def _stain_index(eosin: np.ndarray, hematoxylin: np.ndarray) -> np.ndarray:
    """Stain optical densities → int32 lookup indices of the same shape: eosin level × 256 +
    hematoxylin level, each level 0..255."""
    e = np.clip(eosin * (255 / EOSIN_MAX) + 0.5, 0, 255).astype(np.int32)
    h = np.clip(hematoxylin * (255 / HEMATOXYLIN_MAX) + 0.5, 0, 255).astype(np.int32)
    return (e << 8) | h


def _double(half: np.ndarray, height: int, width: int) -> np.ndarray:
    """[h, w, 3] → [height, width, 3]: every pixel doubled both ways, the excess cropped."""
    rows, cols = half.shape[:2]
    full = np.broadcast_to(half[:, None, :, None], (rows, 2, cols, 2, 3))
    return np.ascontiguousarray(full.reshape(2 * rows, 2 * cols, 3)[:height, :width])


def _uniform_centres(
    rng: np.random.Generator, kind: NucleusKind, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) int level-0 centres of nuclei of ``kind`` uniform over the picture, off the edge."""
    count = rng.poisson(shape[0] * shape[1] / kind[3])
    ys = rng.integers(MARGIN, shape[0] - MARGIN, count)
    return ys, rng.integers(MARGIN, shape[1] - MARGIN, count)


def _centres_in(
    rng: np.random.Generator, circle: Region, kind: NucleusKind, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) int level-0 centres of nuclei of ``kind`` uniform in ``circle``, off the edge."""
    count = rng.poisson(np.pi * circle.radius**2 / kind[3])
    distance = circle.radius * np.sqrt(rng.random(count))
    angle = rng.uniform(0, 2 * np.pi, count)
    ys = np.clip(np.rint(circle.y + distance * np.sin(angle)), MARGIN, shape[0] - 1 - MARGIN)
    xs = np.clip(np.rint(circle.x + distance * np.cos(angle)), MARGIN, shape[1] - 1 - MARGIN)
    return ys.astype(np.int64), xs.astype(np.int64)


def _in_tissue(
    centres: tuple[np.ndarray, np.ndarray], tissue_half: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The level-0 ``centres`` (ys, xs) that fall on tissue (bool, half resolution)."""
    ys, xs = centres
    keep = tissue_half[ys // 2, xs // 2]
    return ys[keep], xs[keep]


def _draw_nuclei(
    rng: np.random.Generator,
    index: np.ndarray,
    centres: tuple[np.ndarray, np.ndarray],
    kind: NucleusKind,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nuclei of ``kind`` at level-0 ``centres`` over the half-resolution lookup ``index``: their
    pixels' level-0 (row, column) and lookup indices, each [n] — the stroma's eosin level and the
    darker of its hematoxylin level and the nucleus's."""
    half_axis, aspect, density, _ = kind
    ys, xs = centres
    which = rng.integers(0, STAMPS_PER_KIND, len(ys))
    level = rng.uniform(*density, len(ys)) * (255 / HEMATOXYLIN_MAX)
    rows, cols, values = [], [], []
    for k in range(STAMPS_PER_KIND):
        dy, dx, darkness = _nucleus_stamp(rng, rng.uniform(*half_axis), rng.uniform(*aspect))
        chosen = which == k
        row = (ys[chosen, None] + dy).ravel()
        col = (xs[chosen, None] + dx).ravel()
        stroma = index[row // 2, col // 2]
        nucleus = np.rint(level[chosen, None] * darkness).astype(np.int32).ravel()
        rows.append(row)
        cols.append(col)
        values.append(np.maximum(stroma, (stroma & ~0xFF) | nucleus))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(values)


def _paint(picture: np.ndarray, lookup: np.ndarray, nuclei: list[tuple[np.ndarray, ...]]) -> None:
    """Colour the nuclei's pixels into ``picture`` [H, W, 3] (in place); where nuclei overlap,
    the darkest wins."""
    rows, cols, values = (np.concatenate(part) for part in zip(*nuclei, strict=True))
    key = (rows * picture.shape[1] + cols) << 16 | values
    key.sort()
    position, value = key >> 16, key & 0xFFFF
    last = np.append(position[1:] != position[:-1], True)  # sorted: the darkest of each pixel
    picture.reshape(-1, 3)[position[last]] = lookup[value[last]]


def _nucleus_stamp(
    rng: np.random.Generator, major: float, aspect: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A soft-edged ellipse with chromatin speckle at a random angle: the row and column offsets
    of its pixels and their darkness in (0, 1], each [n]."""
    reach = math.ceil(major)
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    angle = rng.uniform(0, np.pi)
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = dy * np.cos(angle) - dx * np.sin(angle)
    inside = 1 - (u / major) ** 2 - (v / (major * aspect)) ** 2
    darkness = np.clip(3 * inside, 0, 1) * rng.uniform(0.8, 1.0, inside.shape)
    keep = darkness > 0
    return dy[keep], dx[keep], darkness[keep]


def _stain_lookup() -> np.ndarray:
    """uint8 [65536, 3]: the RGB of eosin level e and hematoxylin level h at index e × 256 + h."""
    e = np.arange(256)[:, None, None] * (EOSIN_MAX / 255) * EOSIN
    h = np.arange(256)[None, :, None] * (HEMATOXYLIN_MAX / 255) * HEMATOXYLIN
    rgb = 255 * np.exp(-(BACKGROUND_OD + e + h))
    return np.rint(rgb).astype(np.uint8).reshape(-1, 3)
