"""Finding MIDI collections: a folder listing and the MAESTRO csv/json index, with their errors.
Every file is built here in ``tmp_path``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from apps.music.events import read_midi, write_midi
from apps.music.midifiles import find_maestro_index, maestro_splits, midi_files
from core.train import InputError

HEADER = "canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration\n"
LISTED = [("train", "2004/a.midi"), ("validation", "2004/b.midi"), ("train", "2006/c.midi"),
          ("test", "2006/d.midi")]  # fmt: skip


def tiny_midi(path, pitch: int = 60) -> None:
    write_midi(np.array([(pitch, 80, 0.0, 0.5)]), path)


def maestro(root, listed=LISTED) -> None:
    """A MAESTRO-like folder: its MIDI files, the index still to write."""
    for i, (_, name) in enumerate(listed):
        tiny_midi(root / name, 60 + i)


def write_csv(path, listed=LISTED, header=HEADER) -> None:
    rows = [f'Bach,"Prelude, Fugue {i}",{split},2004,{name},{name}.wav,1.5\n'
            for i, (split, name) in enumerate(listed)]  # fmt: skip
    path.write_text(header + "".join(rows))


def test_folder_listing(tmp_path):
    for name in ("b/z.MID", "a.midi", "b/a/y.mid", "c.Midi"):
        tiny_midi(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not music")
    (tmp_path / "d.mid").mkdir()  # a folder named like a MIDI file is not one
    found = midi_files(tmp_path)
    assert found == [tmp_path / n for n in ("a.midi", "b/a/y.mid", "b/z.MID", "c.Midi")]
    assert read_midi(found[0])[0, 0] == 60


def test_folder_errors(tmp_path):
    with pytest.raises(InputError, match="no such folder") as caught:
        midi_files(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(caught.value)
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(InputError, match="no MIDI files") as caught:
        midi_files(tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_maestro_csv(tmp_path):
    maestro(tmp_path)
    write_csv(tmp_path / "maestro-v3.0.0.csv")
    splits = maestro_splits(tmp_path / "maestro-v3.0.0.csv")
    assert splits == {
        "train": [tmp_path / "2004/a.midi", tmp_path / "2006/c.midi"],
        "validation": [tmp_path / "2004/b.midi"],
        "test": [tmp_path / "2006/d.midi"],
    }
    assert all(p.is_absolute() for paths in splits.values() for p in paths)


@pytest.mark.parametrize("layout", ["columns", "records"])
def test_maestro_json(tmp_path, layout):
    maestro(tmp_path)
    if layout == "columns":  # v3: one object per column, keyed by row number
        data = {"split": {str(i): s for i, (s, _) in enumerate(LISTED)},
                "midi_filename": {str(i): n for i, (_, n) in enumerate(LISTED)},
                "duration": {str(i): 1.5 for i in range(len(LISTED))}}  # fmt: skip
    else:  # v1/v2: a list of records
        data = [{"split": s, "midi_filename": n, "year": 2004} for s, n in LISTED]
    (tmp_path / "maestro-v2.0.0.json").write_text(json.dumps(data))
    splits = maestro_splits(tmp_path / "maestro-v2.0.0.json")
    assert splits["train"] == [tmp_path / "2004/a.midi", tmp_path / "2006/c.midi"]
    assert splits["validation"] == [tmp_path / "2004/b.midi"]
    assert splits["test"] == [tmp_path / "2006/d.midi"]


def test_index_relative_to_its_folder(tmp_path, monkeypatch):
    root = tmp_path / "maestro"
    maestro(root)
    write_csv(root / "maestro-v3.0.0.csv")
    monkeypatch.chdir(tmp_path)
    splits = maestro_splits("maestro/maestro-v3.0.0.csv")
    assert splits["test"] == [root / "2006/d.midi"]


def test_find_index(tmp_path):
    assert find_maestro_index(tmp_path) is None
    for name in ("maestro-v2.0.0.json", "maestro-v2.0.0.csv", "maestro-v10.0.0.csv"):
        (tmp_path / name).write_text("")
    assert find_maestro_index(tmp_path) == tmp_path / "maestro-v10.0.0.csv"
    (tmp_path / "maestro-v2.0.0.csv").unlink()
    (tmp_path / "maestro-v10.0.0.csv").unlink()
    assert find_maestro_index(tmp_path) == tmp_path / "maestro-v2.0.0.json"


def test_csv_errors(tmp_path):
    maestro(tmp_path)
    index = tmp_path / "maestro-v3.0.0.csv"
    write_csv(index, header=HEADER.replace("split,", "fold,"))
    with pytest.raises(InputError, match="missing column 'split'") as caught:
        maestro_splits(index)
    assert f"{index}:1:" in str(caught.value)

    write_csv(index, [*LISTED[:2], ("dev", "2006/c.midi")])
    with pytest.raises(InputError, match="unknown split 'dev'") as caught:
        maestro_splits(index)
    assert f"{index}:4:" in str(caught.value)  # the header is line 1

    listed = [*LISTED, ("train", "2008/gone.midi"), ("test", "2008/lost.midi")]
    write_csv(index, listed)
    with pytest.raises(InputError, match="2 of 6 listed files are missing") as caught:
        maestro_splits(index)
    assert f"{index}:6:" in str(caught.value) and "gone.midi" in str(caught.value)

    index.write_text(HEADER)
    with pytest.raises(InputError, match="no performances"):
        maestro_splits(index)
    with pytest.raises(InputError, match="no such file"):
        maestro_splits(tmp_path / "maestro-v9.csv")


def test_json_errors(tmp_path):
    maestro(tmp_path)
    index = tmp_path / "maestro-v3.0.0.json"
    index.write_text(json.dumps({"split": {"0": "train"}}))
    with pytest.raises(InputError, match="missing key 'midi_filename'") as caught:
        maestro_splits(index)
    assert str(index) in str(caught.value)

    index.write_text(json.dumps([{"split": "train", "midi_filename": "2004/a.midi"},
                                 {"midi_filename": "2004/b.midi"}]))  # fmt: skip
    with pytest.raises(InputError, match="record 1: missing key 'split'"):
        maestro_splits(index)

    index.write_text(json.dumps([{"split": "test", "midi_filename": "nowhere.midi"}]))
    with pytest.raises(InputError, match="1 of 1 listed files are missing") as caught:
        maestro_splits(index)
    assert "record 0" in str(caught.value) and "nowhere.midi" in str(caught.value)

    index.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        maestro_splits(index)
