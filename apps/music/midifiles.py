"""Finding MIDI collections: a folder of ``.mid``/``.midi`` files, or the MAESTRO layout (Hawthorne
et al. 2019), whose ``maestro-v*.csv`` / ``.json`` index gives each performance's ``split`` (train,
validation, test) and ``midi_filename`` relative to the index's folder. The Music Transformer
(Huang et al. 2019, §5.1) trains on MAESTRO's own splits, encoded as the performance events of
Oore et al. 2018 (:mod:`apps.music.events`).

Bad input raises ``InputError`` naming the file (and, for the csv, the line) and what was wrong.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from core.train import InputError

SPLITS = ("train", "validation", "test")
MIDI_SUFFIXES = (".mid", ".midi")
_COLUMNS = ("split", "midi_filename")
_EXPECTED = "a MAESTRO index with 'split' and 'midi_filename' for every performance"


def midi_files(folder: str | Path) -> list[Path]:
    """Every ``.mid``/``.midi`` file (any case) under ``folder``, subfolders included, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder (expected a folder of MIDI files)")
    found = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file()
    )
    if not found:
        raise InputError(f"{folder}: no MIDI files (.mid, .midi) in it or its subfolders")
    return found


def find_maestro_index(folder: str | Path) -> Path | None:
    """The MAESTRO index in ``folder`` (``maestro-v*.csv``, else ``.json``; the newest version
    first), or None when there is none."""
    folder = Path(folder)

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.stem))

    for suffix in (".csv", ".json"):
        found = [p for p in folder.glob(f"maestro-v*{suffix}") if p.is_file()]
        if found:
            return max(found, key=version)
    return None


def _csv_rows(path: Path) -> list[tuple[str, str, str]]:
    """(where, split, midi_filename) of each csv row, where = ``path:line``."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        for column in _COLUMNS:
            if column not in header:
                raise InputError(f"{path}:1: missing column {column!r} (expected {_EXPECTED})")
        return [
            (f"{path}:{reader.line_num}", row["split"] or "", row["midi_filename"] or "")
            for row in reader
        ]


def _json_rows(path: Path) -> list[tuple[str, str, str]]:
    """(where, split, midi_filename) of each record of a MAESTRO json: either column-oriented
    (v3: ``{"split": {"0": ...}, "midi_filename": {"0": ...}}``) or a list of records (v1/v2)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc
    if isinstance(data, dict):
        for key in _COLUMNS:
            if not isinstance(data.get(key), dict):
                raise InputError(f"{path}: missing key {key!r} (expected {_EXPECTED})")
        splits, names = data["split"], data["midi_filename"]
        rows = []
        for i in names:
            if i not in splits:
                raise InputError(f"{path}: record {i}: missing key 'split' (expected {_EXPECTED})")
            rows.append((f"{path}: record {i}", str(splits[i]), str(names[i])))
        return rows
    if isinstance(data, list):
        rows = []
        for i, record in enumerate(data):
            for key in _COLUMNS:
                if not isinstance(record, dict) or key not in record:
                    raise InputError(
                        f"{path}: record {i}: missing key {key!r} (expected {_EXPECTED})"
                    )
            rows.append((f"{path}: record {i}", str(record["split"]), str(record["midi_filename"])))
        return rows
    raise InputError(f"{path}: a JSON {type(data).__name__}, not {_EXPECTED}")


def maestro_splits(index_file: str | Path) -> dict[str, list[Path]]:
    """'train', 'validation' and 'test' → absolute paths of their MIDI files, in index order, read
    from a MAESTRO ``.csv`` or ``.json`` index; every listed file must exist."""
    path = Path(index_file)
    if not path.is_file():
        raise InputError(f"{path}: no such file (expected {_EXPECTED})")
    if path.suffix.lower() == ".csv":
        rows = _csv_rows(path)
    elif path.suffix.lower() == ".json":
        rows = _json_rows(path)
    else:
        raise InputError(f"{path}: not a .csv or .json file (expected {_EXPECTED})")
    if not rows:
        raise InputError(f"{path}: no performances listed (expected {_EXPECTED})")
    splits: dict[str, list[Path]] = {name: [] for name in SPLITS}
    missing: list[tuple[str, Path]] = []
    for where, split, name in rows:
        if split not in splits:
            raise InputError(
                f"{where}: unknown split {split!r} (expected one of {', '.join(SPLITS)})"
            )
        if not name:
            raise InputError(f"{where}: empty midi_filename")
        midi = (path.parent / name).resolve()
        if not midi.is_file():
            missing.append((where, midi))
        splits[split].append(midi)
    if missing:
        where, first = missing[0]
        raise InputError(
            f"{where}: listed MIDI file {first} does not exist "
            f"({len(missing)} of {len(rows)} listed files are missing)"
        )
    return splits
