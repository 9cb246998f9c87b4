"""The built-in scanpath data: a seeded visual-search simulator that needs no download.

It writes COCO-Search18-style files (``fixations.json``, a list of records, and ``objects.json``,
each image's objects), so simulated and real data go through the same reader.

The displays: 1000 × 600 px, objects on a rows × cols grid (each cell filled with probability 0.7,
at least 8 objects), each box about 70% of its cell and jittered. Objects belong to 8 appearance
categories whose prototype descriptors differ, except three pairs made deliberately alike (the
confusable distractors); each object is its prototype plus a little noise. One object is the target
and its category is the record's task.

The searcher (a guided-search caricature, so the statistics are learnable): it starts on the object
nearest the display centre; each next fixation is drawn from a softmax over the objects of
``a·similarity(object, target) − b·distance / cell size − c·memory(object)``, where memory is 1 on
fixating an object and decays by a factor each fixation (inhibition of return that fades, so
revisits happen); with probability 0.08 it refixates the same object. On the target it stops with
probability 0.85 (found), and it gives up after 3·N fixations. Each viewer has their own a, b, c.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from apps.scanpath.scenes import DESCRIPTOR_DIM
from core.train.files import write_atomically

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 1000, 600
OCCUPANCY = 0.7
MIN_OBJECTS = 8
BOX_SHARE = 0.7  # of a cell's width and height
CATEGORIES = 8
ALIKE_PAIRS = ((0, 1), (2, 3), (4, 5))  # categories whose prototypes differ only a little
ALIKE_SPREAD = 0.07  # std of the difference between alike prototypes
MIN_PROTOTYPE_GAP = 0.25  # mean |difference| between prototypes that are not an alike pair
OBJECT_NOISE = 0.03  # std of an object's descriptor around its prototype
PROTOTYPE_SEED = 20240929  # the categories' looks are the same in every simulation
SIMILARITY_WEIGHT = 14.0  # a
DISTANCE_WEIGHT = 0.9  # b, per cell size
MEMORY_WEIGHT = 6.0  # c
MEMORY_DECAY = 0.9  # per fixation
INDIVIDUAL_SPREAD = 0.2  # each viewer's a, b, c vary by this relative std
REFIXATION = 0.08
DETECTION = 0.85
MAX_FIXATIONS_PER_OBJECT = 3
DURATION_MS = (200.0, 400.0)


@dataclass
class Display:
    """One simulated display: boxes float64 ``[N, 4]`` (pixels, rounded to 0.1), categories int64
    ``[N]``, descriptors float64 ``[N, DESCRIPTOR_DIM]``, the target's index, and the grid's cell
    size (the geometric mean of its width and height, px)."""

    boxes: np.ndarray
    categories: np.ndarray
    descriptors: np.ndarray
    target: int
    cell: float


@dataclass
class Searcher:
    """One viewer's weights on target similarity, distance and memory (individual differences)."""

    similarity: float
    distance: float
    memory: float


def category_names() -> list[str]:
    """The categories' names, used as tasks: ``kind0`` … ``kind7``."""
    return [f"kind{k}" for k in range(CATEGORIES)]


def prototypes() -> np.ndarray:
    """float64 ``[CATEGORIES, DESCRIPTOR_DIM]`` in [0, 1]: the categories' looks, fixed; alike pairs
    differ a little, all other pairs by a mean |difference| of at least MIN_PROTOTYPE_GAP."""
    rng = np.random.default_rng(PROTOTYPE_SEED)
    rows: list[np.ndarray] = []
    while len(rows) < CATEGORIES:
        k = len(rows)
        partner = next((a for a, b in ALIKE_PAIRS if b == k), None)
        if partner is not None:
            rows.append(np.clip(rows[partner] + rng.normal(0, ALIKE_SPREAD, DESCRIPTOR_DIM), 0, 1))
            continue
        candidate = rng.uniform(0.05, 0.95, DESCRIPTOR_DIM)
        if all(np.abs(candidate - row).mean() >= MIN_PROTOTYPE_GAP for row in rows):
            rows.append(candidate)
    return np.stack(rows)


def make_display(grid: tuple[int, int], looks: np.ndarray, rng: np.random.Generator) -> Display:
    """A random display: occupied cells, jittered boxes, categories, descriptors and a target."""
    rows, cols = grid
    cell_w, cell_h = WIDTH / cols, HEIGHT / rows
    occupied = np.flatnonzero(rng.random(rows * cols) < OCCUPANCY)
    if len(occupied) < MIN_OBJECTS:
        free = np.setdiff1d(np.arange(rows * cols), occupied)
        extra = rng.choice(free, MIN_OBJECTS - len(occupied), replace=False)
        occupied = np.sort(np.concatenate([occupied, extra]))
    n = len(occupied)
    r, c = np.divmod(occupied, cols)
    size = np.array([cell_w, cell_h]) * BOX_SHARE * rng.uniform(0.85, 1.0, (n, 2))
    room = (np.array([cell_w, cell_h]) - size) / 2
    centre = np.stack([(c + 0.5) * cell_w, (r + 0.5) * cell_h], axis=1)
    centre += rng.uniform(-0.8, 0.8, (n, 2)) * room
    boxes = np.round(np.concatenate([centre - size / 2, centre + size / 2], axis=1), 1)
    categories = rng.integers(0, CATEGORIES, n)
    noise = rng.normal(0, OBJECT_NOISE, (n, DESCRIPTOR_DIM))
    descriptors = np.round(np.clip(looks[categories] + noise, 0, 1), 4)
    return Display(boxes, categories, descriptors, int(rng.integers(n)), np.sqrt(cell_w * cell_h))


def make_searchers(viewers: int, seed: int) -> list[Searcher]:
    """Each viewer's weights: the defaults scaled by lognormal factors of spread INDIVIDUAL_SPREAD."""
    rng = np.random.default_rng([seed, 0])
    scale = np.exp(rng.normal(0, INDIVIDUAL_SPREAD, (viewers, 3)))
    base = np.array([SIMILARITY_WEIGHT, DISTANCE_WEIGHT, MEMORY_WEIGHT])
    return [Searcher(*(base * row).tolist()) for row in scale]


def search(display: Display, searcher: Searcher, rng: np.random.Generator) -> np.ndarray:
    """int64 ``[L]``: the objects one viewer fixates in order, ending on the target when found."""
    boxes = display.boxes
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    n = len(boxes)
    similarity = 1 - np.abs(display.descriptors - display.descriptors[display.target]).mean(1)
    drive = searcher.similarity * similarity
    cost = (
        searcher.distance / display.cell * np.linalg.norm(centres[:, None] - centres[None], axis=2)
    )
    cost[np.diag_indices(n)] = np.inf  # a move goes elsewhere; staying is the refixation draw
    memory = np.zeros(n)
    current = int(np.argmin(np.linalg.norm(centres - [WIDTH / 2, HEIGHT / 2], axis=1)))
    path = [current]
    while len(path) < MAX_FIXATIONS_PER_OBJECT * n:
        detect, refixate, move = rng.random(3)
        if current == display.target and detect < DETECTION:
            break
        memory *= MEMORY_DECAY
        memory[current] = 1.0
        if refixate >= REFIXATION:
            logits = drive - cost[current] - searcher.memory * memory
            weights = np.cumsum(np.exp(logits - logits.max()))
            current = int(np.searchsorted(weights, move * weights[-1], side="right"))
        path.append(current)
    return np.array(path, dtype=np.int64)


def fixation_pixels(boxes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float64 ``[L, 2]``: a point in each of ``boxes [L, 4]``, Gaussian around its centre and at
    least 1 px inside its edges, rounded to 0.1 px."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    spread = (boxes[:, 2:] - boxes[:, :2]) / 5
    points = centre + rng.standard_normal(centre.shape) * spread
    return np.round(np.clip(points, boxes[:, :2] + 1, boxes[:, 2:] - 1), 1)


def xywh(boxes: np.ndarray) -> list[list[float]]:
    """``[x, y, w, h]`` of each ``(x0, y0, x1, y1)`` box of ``boxes [N, 4]``, rounded to 0.1 px."""
    return np.round(np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1), 1).tolist()


def scene_records(
    name: str, display: Display, searchers: list[Searcher], rngs: list[np.random.Generator]
) -> list[dict]:
    """The fixation records of every viewer on one display, COCO-Search18 style."""
    task = category_names()[display.categories[display.target]]
    records = []
    for subject, (searcher, rng) in enumerate(zip(searchers, rngs, strict=True), start=1):
        objects = search(display, searcher, rng)
        points = fixation_pixels(display.boxes[objects], rng)
        durations = np.round(rng.uniform(*DURATION_MS, len(objects)))
        records.append(
            {
                "name": name,
                "subject": subject,
                "task": task,
                "condition": "present",
                "bbox": xywh(display.boxes[display.target : display.target + 1])[0],
                "X": points[:, 0].tolist(),
                "Y": points[:, 1].tolist(),
                "T": durations.tolist(),
                "length": len(objects),
            }
        )
    return records


def objects_entry(display: Display) -> dict:
    """One image's entry of ``objects.json``: its size and objects (box, category, descriptor)."""
    names = category_names()
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "objects": [
            {"bbox": box, "category": names[k], "descriptor": d}
            for box, k, d in zip(
                xywh(display.boxes),
                display.categories.tolist(),
                display.descriptors.tolist(),
                strict=True,
            )
        ],
    }


def simulate(
    n_scenes: int, viewers: int, seed: int, grid: tuple[int, int], progress: bool = True
) -> tuple[list[dict], dict[str, dict]]:
    """``n_scenes`` displays searched by ``viewers`` viewers each: the fixation records and the
    objects by image name; the same arguments give the same output."""
    if n_scenes < 1 or viewers < 1:
        raise ValueError(f"need at least one scene and viewer, got {n_scenes} and {viewers}")
    if grid[0] * grid[1] < MIN_OBJECTS:
        raise ValueError(f"a {grid[0]}×{grid[1]} grid holds fewer than {MIN_OBJECTS} objects")
    looks = prototypes()
    searchers = make_searchers(viewers, seed)
    records: list[dict] = []
    objects: dict[str, dict] = {}
    width = len(str(n_scenes - 1))
    for index in tqdm(range(n_scenes), desc="simulating searches", disable=not progress):
        name = f"sim_{index:0{width}d}.png"
        display = make_display(grid, looks, np.random.default_rng([seed, 1, index]))
        rngs = [np.random.default_rng([seed, 2, index, v]) for v in range(viewers)]
        records += scene_records(name, display, searchers, rngs)
        objects[name] = objects_entry(display)
    return records, objects


def ensure_simulated(
    root: Path,
    n_scenes: int,
    viewers: int,
    seed: int,
    grid: tuple[int, int] = (6, 10),
    progress: bool = True,
) -> tuple[Path, Path]:
    """The paths of ``fixations.json`` and ``objects.json`` under
    ``root/simulated_<n>_<viewers>_<seed>_<rows>x<cols>``, simulating them only when absent."""
    folder = Path(root) / f"simulated_{n_scenes}_{viewers}_{seed}_{grid[0]}x{grid[1]}"
    fixations, objects = folder / "fixations.json", folder / "objects.json"
    if fixations.is_file() and objects.is_file():
        return fixations, objects
    log.info("simulating %d scenes × %d viewers (seed %d) into %s", n_scenes, viewers, seed, folder)
    records, entries = simulate(n_scenes, viewers, seed, grid, progress)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(objects, lambda p: p.write_text(json.dumps(entries, separators=(",", ":"))))
    write_atomically(fixations, lambda p: p.write_text(json.dumps(records, separators=(",", ":"))))
    return fixations, objects
