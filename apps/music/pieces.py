"""Pieces as token arrays, from every source the app reads: the music21 chorales (built in), JSB
files (json, pickle, npz), a folder of MIDI files, or the MAESTRO layout. MIDI is encoded to
performance events once, with a progress bar, and cached under the data root."""

from __future__ import annotations

import hashlib
import json
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from apps.music import chorales, events, midifiles
from apps.music.corpus import ensure_chorales
from core.train import InputError

logger = logging.getLogger("apps.music")

Format = Literal["music21", "jsb_json", "jsb_pickle", "jsb_npz", "midi", "maestro"]
GRID_FORMATS = ("music21", "jsb_json", "jsb_pickle", "jsb_npz")
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Piece:
    """One piece: a name (chorale index or MIDI file) and its tokens ``[N]`` (no START/END)."""

    name: str
    tokens: np.ndarray


Pieces = dict[str, list[Piece]]  # split (train, valid, test) → pieces


def grid_pieces(format: Format, path: Path, names: dict[str, list[str]] | None = None) -> Pieces:
    """Chorales of a JSB file (``format`` picks the reader) as grid tokens, keeping its split;
    ``names`` per split (else ``train000``, …)."""
    readers = {
        "jsb_json": chorales.read_jsb_json,
        "music21": chorales.read_jsb_json,
        "jsb_pickle": chorales.read_jsb_pickle,
        "jsb_npz": chorales.read_jsb_npz,
    }
    splits = readers[format](path)
    pieces: Pieces = {}
    for split in SPLITS:
        grids = splits.get(split, [])
        labels = (names or {}).get(split) or [f"{split}{i:03d}" for i in range(len(grids))]
        pieces[split] = [
            Piece(label, chorales.grid_to_tokens(grid))
            for label, grid in zip(labels, grids, strict=True)
        ]
    return pieces


def music21_pieces(root: Path, limit: int | None) -> tuple[Pieces, Path]:
    """The built-in chorales: music21's Bach corpus as a JSB json under ``root`` (made once),
    named by BWV number from its sidecar."""
    path = ensure_chorales(root, limit)
    names = json.loads(path.with_suffix(".names.json").read_text())
    return grid_pieces("music21", path, names), path


def split_of(name: str) -> str:
    """A stable split for a file with none (a MIDI folder): 10 % test, 10 % valid by name hash."""
    bucket = zlib.crc32(name.encode()) % 10
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


def midi_pieces(files: dict[str, list[Path]], root: Path, base: Path) -> Pieces:
    """MIDI files per split → performance events, each encoded once and cached under
    ``root/events`` (keyed by path, size and modification time)."""
    cache = root / "events"
    cache.mkdir(parents=True, exist_ok=True)
    pieces: Pieces = {split: [] for split in SPLITS}
    every = [(split, path) for split, paths in files.items() for path in paths]
    for split, path in tqdm(every, desc="encoding MIDI", unit="file"):
        stat = path.stat()
        key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        cached = cache / f"{key.hexdigest()}.npy"
        if cached.is_file():
            tokens = np.load(cached)
        else:
            tokens = encode_midi(path)
            np.save(cached, tokens)
        name = str(path.relative_to(base)) if path.is_relative_to(base) else path.name
        pieces[split].append(Piece(name, tokens))
    return pieces


def encode_midi(path: Path) -> np.ndarray:
    """A MIDI file's performance events; bad notes become an error naming the file."""
    notes = events.read_midi(path)
    try:
        return events.notes_to_events(notes)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from exc


def folder_pieces(folder: Path, root: Path) -> Pieces:
    """Every ``.mid``/``.midi`` under ``folder``, split by :func:`split_of` on the relative path."""
    files: dict[str, list[Path]] = {split: [] for split in SPLITS}
    for path in midifiles.midi_files(folder):
        files[split_of(str(path.relative_to(folder)))].append(path)
    return midi_pieces(files, root, folder)


def maestro_pieces(index: Path, root: Path) -> Pieces:
    """The MAESTRO layout: its csv/json index's ``split`` (validation → valid) and files."""
    splits = midifiles.maestro_splits(index)
    files = {"train": splits["train"], "valid": splits["validation"], "test": splits["test"]}
    return midi_pieces(files, root, index.parent)


def check_pieces(pieces: Pieces, source: Path | str, needed: tuple[str, ...]) -> None:
    """Refuse an empty split the run needs, naming the source, and log the sizes."""
    for split in needed:
        if not pieces[split]:
            raise InputError(
                f"{source}: no {split} pieces (expected at least one in each of {needed})"
            )
    sizes = ", ".join(
        f"{split} {len(p)} pieces / {sum(len(x.tokens) for x in p):,} tokens"
        for split, p in pieces.items()
    )
    logger.info("%s: %s", source, sizes)
