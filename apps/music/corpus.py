"""The built-in default data: the Bach chorales of music21's corpus on the JSB 16th-note grid.

Each chorale's Soprano, Alto, Tenor and Bass parts are sampled every 16th note and cached once as a
JSON file in the layout of Jsb16thSeparated.json (``{"train", "valid", "test"}`` → chorales →
steps → 4 pitches), so :func:`apps.music.chorales.read_jsb_json` loads it like the released file.
A sidecar ``*.names.json`` keeps the chorale names in the same order.

Licensing: Bach's chorales are in the public domain; the MusicXML/Humdrum encodings are the ones
that ship inside the music21 package (BSD-licensed, with its corpus), so nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from apps.music.chorales import SPLITS, VOICE_NAMES, VOICES
from core.train.errors import InputError

logger = logging.getLogger("apps.music")

# score formats in music21's bach folder, best first: a chorale encoded twice keeps the first
FORMATS = (".mxl", ".xml", ".musicxml", ".krn")


def music21_chorale_paths() -> list[Path]:
    """The score files of music21's ``bach`` corpus folder, sorted, one per chorale (MusicXML
    preferred where a chorale is also in Humdrum); the roman-numeral analyses are left out."""
    from music21 import corpus

    best: dict[str, Path] = {}
    for path in map(Path, corpus.getComposer("bach")):
        if path.parent.name != "bach" or path.suffix not in FORMATS:
            continue
        kept = best.get(path.stem)
        if kept is None or FORMATS.index(path.suffix) < FORMATS.index(kept.suffix):
            best[path.stem] = path
    return sorted(best.values())


def _first_word(name: str | None) -> str:
    words = (name or "").lower().split()
    return words[0] if words else ""


def satb_parts(score) -> list | None:
    """The score's [4] Soprano, Alto, Tenor, Bass parts, or None.

    A voice is the part named exactly so (case-insensitive), else the one part whose name starts
    with it ('Soprano Oboe 1 Violin1'); without names, a score of exactly 4 parts is S A T B in
    order. Anything else (two sopranos, a keyboard piece) is None."""
    parts = list(score.parts)
    chosen = []
    for voice in (name.lower() for name in VOICE_NAMES):
        exact = [p for p in parts if (p.partName or "").strip().lower() == voice]
        prefix = [p for p in parts if _first_word(p.partName) == voice]
        matches = exact if len(exact) == 1 else prefix
        if len(matches) != 1:
            break
        chosen.append(matches[0])
    if len(chosen) == VOICES:
        return chosen
    return parts if len(parts) == VOICES else None


def _step(quarters: float) -> int:
    """Quarter-note offset → 16th step, halves rounded up (Python's round() goes to even)."""
    return math.floor(quarters * 4 + 0.5)


def chorale_grid(score) -> np.ndarray | None:
    """A parsed music21 Score → grid [T, 4] int16 on 16th notes (pitch or -1), or None without SATB.

    A note at offset o lasting q quarters fills steps round(4o) .. round(4(o + q)) - 1 (offsets of
    the flattened part, pickups as they are); a chord gives its highest pitch; grace notes are
    skipped; a later note overwrites an earlier one where rounding (32nds, triplets) or a second
    voice in the part makes them overlap. T = ceil(4 × the longest part's length)."""
    parts = satb_parts(score)
    if parts is None:
        return None
    length = max(float(part.highestTime) for part in parts)
    grid = np.full((math.ceil(length * 4 - 1e-9), VOICES), -1, dtype=np.int16)
    for voice, part in enumerate(parts):
        for element in part.flatten().notesAndRests:
            quarters = float(element.quarterLength)
            if element.isRest or quarters == 0:
                continue
            pitch = max(p.midi for p in element.pitches)  # a note has one, a chord its top one
            offset = float(element.offset)
            grid[_step(offset) : _step(offset + quarters), voice] = pitch
    return grid


def split_of(name: str) -> str:
    """The stable split of a chorale by name: crc32(stem) % 10 → 0 test, 1 valid, else train."""
    bucket = zlib.crc32(name.encode()) % 10
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


def assign_splits(names: list[str]) -> list[str]:
    """Each name's split by :func:`split_of`; when that leaves a split empty (a small ``limit``)
    and there are at least 3 chorales, round-robin by index (train, valid, test, train, …)."""
    splits = [split_of(name) for name in names]
    if len(names) >= len(SPLITS) and set(splits) != set(SPLITS):
        splits = [SPLITS[i % len(SPLITS)] for i in range(len(names))]
    return splits


def _write_json_atomic(path: Path, data: object) -> None:
    """Write via a temporary file in the same folder and a rename: never a half-written cache."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(data, out, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_chorales(root: str | Path, limit: int | None = None) -> Path:
    """``root/music21_chorales.json`` (``music21_chorales_first{limit}.json`` for the first
    ``limit`` usable chorales), converted from music21's corpus on the first call, then reused.

    Scores without SATB parts are skipped and counted in the log; parsing all ~410 takes a minute
    or two."""
    if limit is not None and limit < 1:
        raise InputError(f"limit must be a positive number of chorales, got {limit}")
    root = Path(root)
    stem = "music21_chorales" if limit is None else f"music21_chorales_first{limit}"
    path = root / f"{stem}.json"
    if path.is_file():
        return path
    from music21 import corpus

    names, grids, skipped = [], [], []
    for score_path in (bar := tqdm(music21_chorale_paths(), desc="music21 chorales")):
        grid = chorale_grid(corpus.parse(score_path))
        if grid is None or len(grid) == 0:
            skipped.append(score_path.name)
        else:
            names.append(score_path.stem)
            grids.append(grid)
        if limit is not None and len(grids) == limit:
            bar.close()
            break
    if not grids:
        raise InputError(f"music21's corpus gave no usable Bach chorale (skipped {len(skipped)})")
    data: dict[str, list] = {split: [] for split in SPLITS}
    named: dict[str, list] = {split: [] for split in SPLITS}
    for name, grid, split in zip(names, grids, assign_splits(names), strict=True):
        data[split].append(grid.tolist())
        named[split].append(name)
    logger.info(
        "music21 chorales: %d converted (%s), %d skipped without SATB parts (%s)",
        len(grids),
        ", ".join(f"{split} {len(data[split])}" for split in SPLITS),
        len(skipped),
        ", ".join(skipped) or "none",
    )
    root.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(root / f"{stem}.names.json", named)
    _write_json_atomic(path, data)  # last: its presence marks a complete cache
    return path
