"""music21's Bach chorales on the JSB grid: the SATB parts are found among the instruments, notes
land on the right 16th steps, and the cache is written once in the Jsb16thSeparated layout."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from music21 import chord, corpus, note, stream

import apps.music.corpus as chorale_corpus
from apps.music.chorales import read_jsb_json
from apps.music.corpus import (
    assign_splits,
    chorale_grid,
    ensure_chorales,
    music21_chorale_paths,
    satb_parts,
)


def make_score(*parts: tuple[str | None, list]) -> stream.Score:
    """A score of named parts, each a list of music21 notes, chords and rests in sequence."""
    score = stream.Score()
    for name, elements in parts:
        part = stream.Part()
        if name is not None:
            part.partName = name
        for element in elements:
            part.append(element)
        score.insert(0, part)
    return score


def satb_in_reverse() -> stream.Score:
    grace = note.Note("B3").getGrace()
    return make_score(
        ("Violin", [note.Note("C6", quarterLength=2.0)]),
        ("Bass", [note.Note("C3", quarterLength=1.5)]),
        ("Tenor", [grace, note.Note("C4", quarterLength=2.0)]),
        ("Alto", [chord.Chord(["E4", "G4"], quarterLength=2.0)]),
        (
            "Soprano",
            [note.Note("C5"), note.Rest(quarterLength=0.5), note.Note("D5", quarterLength=0.5)],
        ),
    )


# the grid of satb_in_reverse by hand: C5 = 72, D5 = 74, G4 = 67 (chord top), C4 = 60, C3 = 48
EXPECTED = [
    [72, 67, 60, 48],
    [72, 67, 60, 48],
    [72, 67, 60, 48],
    [72, 67, 60, 48],
    [-1, 67, 60, 48],
    [-1, 67, 60, 48],
    [74, 67, 60, -1],
    [74, 67, 60, -1],
]


def test_hand_built_score_lands_on_16ths():
    grid = chorale_grid(satb_in_reverse())
    assert grid.dtype == np.int16 and grid.tolist() == EXPECTED


def test_part_choice():
    four = [note.Note("C4", quarterLength=1.0)]
    unnamed = make_score(*[(None, four)] * 4)
    assert len(satb_parts(unnamed)) == 4
    assert chorale_grid(unnamed).shape == (4, 4)
    assert satb_parts(make_score(*[(None, four)] * 5)) is None
    two_sopranos = [("Soprano 1", four), ("Soprano 2", four), ("Alto", four), ("Tenor", four)]
    assert chorale_grid(make_score(*two_sopranos, ("Bass", four))) is None
    doubled = make_score(
        ("Soprano\rOboe 1,2", four), ("Alto Violin 2", four), ("Tenor", four), ("Bass", four)
    )
    assert [p.partName.split()[0] for p in satb_parts(doubled)] == [
        "Soprano",
        "Alto",
        "Tenor",
        "Bass",
    ]


def test_paths_are_the_chorales_once_each():
    paths = music21_chorale_paths()
    assert 400 <= len(paths) <= 420 and paths == sorted(paths)
    assert {p.suffix for p in paths} <= {".mxl", ".xml", ".krn"}
    assert len({p.stem for p in paths}) == len(paths)  # bwv277 is there as .mxl and .krn
    assert "bwv79.6.mxl" in {p.name for p in paths}


def test_real_chorale_with_instruments():
    score = corpus.parse("bach/bwv79.6")  # horns, timpani, then S A T B
    assert len(score.parts) > 4
    grid = chorale_grid(score)
    assert grid.shape == (int(np.ceil(score.highestTime * 4)), 4)
    for voice, name in enumerate(["Soprano", "Alto", "Tenor", "Bass"]):
        [part] = [p for p in score.parts if p.partName == name]
        notes = [n for n in part.flatten().notes][:8]
        for n in notes:
            first = round(float(n.offset) * 4)
            last = round(float(n.offset + n.quarterLength) * 4) - 1
            assert grid[first, voice] == n.pitch.midi == grid[last, voice]


def test_assign_splits_is_stable_and_fills_every_split():
    names = [f"bwv{i}.{j}" for i in range(1, 140) for j in range(3)]
    splits = assign_splits(names)
    assert assign_splits(names[::-1]) == splits[::-1]  # by name, not by position
    share = {s: splits.count(s) / len(names) for s in ("train", "valid", "test")}
    assert 0.05 < share["test"] < 0.15 and 0.05 < share["valid"] < 0.15
    assert sorted(assign_splits(["bwv1.6", "bwv10.7", "bwv101.7"])) == ["test", "train", "valid"]


def test_ensure_chorales_skips_and_limits(tmp_path, monkeypatch, caplog):
    good = satb_in_reverse
    two_sopranos = make_score(*[(f"Soprano {i}", [note.Note("C5")]) for i in (1, 2)])
    scores = {"a": good(), "b": two_sopranos, "c": good(), "d": good(), "e": good()}
    parsed = []

    def parse(path):
        parsed.append(Path(path).stem)
        return scores[Path(path).stem]

    fake = [Path(f"/nowhere/{name}.mxl") for name in scores]
    monkeypatch.setattr(chorale_corpus, "music21_chorale_paths", lambda: fake)
    monkeypatch.setattr(corpus, "parse", parse)
    caplog.set_level(logging.INFO, logger="apps.music")
    path = ensure_chorales(tmp_path / "cache", limit=3)
    assert path == tmp_path / "cache" / "music21_chorales_first3.json"
    assert parsed == ["a", "b", "c", "d"]  # stops at the third usable one
    assert "3 converted" in caplog.text and "1 skipped" in caplog.text and "b.mxl" in caplog.text
    splits = read_jsb_json(path)
    assert all(len(splits[s]) == 1 for s in ("train", "valid", "test"))
    assert all(grid.tolist() == EXPECTED for chorales in splits.values() for grid in chorales)
    names = json.loads((tmp_path / "cache" / "music21_chorales_first3.names.json").read_text())
    assert sorted(name for split in names.values() for name in split) == ["a", "c", "d"]
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.suffix == ".tmp"] == []


def test_ensure_chorales_real_corpus_and_cache(tmp_path, monkeypatch):
    path = ensure_chorales(tmp_path, limit=3)
    splits = read_jsb_json(path)
    assert all(len(splits[s]) == 1 for s in ("train", "valid", "test"))
    for chorales in splits.values():
        [grid] = chorales
        assert len(grid) >= 64 and (grid != -1).mean() > 0.9
        pitches = grid[grid != -1]
        assert pitches.min() >= 36 and pitches.max() <= 84
        assert (grid[:, 0][grid[:, 0] != -1] >= 55).all()  # the soprano column is a soprano
    written = path.read_bytes()

    def refuse(*args, **kwargs):
        raise AssertionError("the cached file should have been reused")

    monkeypatch.setattr(corpus, "parse", refuse)
    assert ensure_chorales(tmp_path, limit=3) == path
    assert path.read_bytes() == written


def test_limit_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="positive"):
        ensure_chorales(tmp_path, limit=0)
