"""The JSB grid: the real samples read whole, bad files refused with file and place, tokens and
transposition invert exactly, and a written MIDI file plays back the grid's notes."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from apps.music.chorales import (
    PITCH,
    REST,
    VOCAB_SIZE,
    chord_to_step,
    grid_to_notes,
    grid_to_tokens,
    read_jsb_json,
    read_jsb_npz,
    read_jsb_pickle,
    tokens_to_grid,
    transpose_grid,
    write_grid_midi,
)
from apps.music.tokens import END, PAD, START
from core.train.errors import InputError


def random_grid(rng: np.random.Generator, steps: int) -> np.ndarray:
    """[steps, 4] pitches 36..81 with held notes (runs) and about 10% rests."""
    grid = rng.integers(36, 82, size=(steps, 4))
    held = rng.random((steps, 4)) < 0.4
    for t in range(1, steps):
        grid[t, held[t]] = grid[t - 1, held[t]]
    grid[rng.random((steps, 4)) < 0.1] = -1
    return grid.astype(np.int16)


# --- the real samples ------------------------------------------------------------------------


def test_json_sample_reads_every_chorale(shared_data):
    path = shared_data / "music" / "Jsb16thSeparated.json"
    splits = read_jsb_json(path)
    assert {name: len(chorales) for name, chorales in splits.items()} == {
        "train": 229,
        "valid": 76,
        "test": 77,
    }
    raw = json.loads(path.read_text())
    for name, chorales in splits.items():
        for grid, steps in zip(chorales, raw[name], strict=True):
            assert grid.ndim == 2 and grid.shape[1] == 4 and grid.dtype == np.int16
            assert np.array_equal(grid, np.array(steps))  # nothing reordered or dropped
            pitches = grid[grid != -1]
            assert pitches.min() >= 36 and pitches.max() <= 96


def test_pickle_sample_keeps_every_chord(shared_data):
    path = shared_data / "music" / "jsb-chorales-quarter.pkl"
    splits = read_jsb_pickle(path)
    assert {name: len(chorales) for name, chorales in splits.items()} == {
        "train": 229,
        "valid": 76,
        "test": 77,
    }
    with path.open("rb") as handle:
        raw = pickle.load(handle, encoding="latin1")
    for name, chorales in splits.items():
        for grid, chords in zip(chorales, raw[name], strict=True):
            assert grid.shape == (len(chords), 4)
            for step, chord in zip(grid, chords, strict=True):
                sounding = step[step != -1]
                assert sorted(sounding.tolist()) == sorted(int(p) for p in chord)
                if len(chord) >= 2:  # the outer voices hold the outer pitches
                    assert step[0] == max(chord) and step[3] == min(chord)


@pytest.mark.parametrize(
    ("chord", "step"),
    [
        ((), [-1, -1, -1, -1]),
        ((67,), [67, -1, -1, -1]),
        ((48, 67), [67, -1, -1, 48]),
        ((64, 48, 60), [64, 60, -1, 48]),
        ((48, 55, 64, 72), [72, 64, 55, 48]),
    ],
)
def test_chord_voicing_rule(chord, step):
    assert chord_to_step(chord, "here") == step


# --- bad files -------------------------------------------------------------------------------


def one_chorale(*steps) -> dict:
    return {"train": [list(steps)], "valid": [], "test": []}


@pytest.mark.parametrize(
    ("data", "where", "why"),
    [
        (one_chorale([60, 55, 52, 48], [60, 55, 52, 48, 40]), "train[0][1]", "5 voices"),
        (one_chorale([60, 55, 52, 48], [60, 130, 52, 48]), "train[0][1]", "pitch 130"),
        (one_chorale([60, "55", 52, 48]), "train[0][0]", "not a number"),
        (one_chorale([60, None, 52, 48]), "train[0][0]", "not a number"),
        (one_chorale([60, True, 52, 48]), "train[0][0]", "not a number"),
        (one_chorale([60, 55.5, 52, 48]), "train[0][0]", "not an integer"),
        (one_chorale([60, -2, 52, 48]), "train[0][0]", "outside 0..127"),
        (one_chorale([60, 55, 52, 48], 7), "train[0][1]", "list of 4 pitches"),
        (
            {"train": [[[60, 55, 52, 48]], []], "valid": [], "test": []},
            "train[1]",
            "no steps",
        ),
        ({"train": [], "valid": [], "test": []}, "", "no chorales"),
        ({"train": [[[60, 55, 52, 48]]], "valid": []}, "", "missing ['test']"),
        ([[[60, 55, 52, 48]]], "", "expected a mapping"),
    ],
)
def test_bad_json_names_file_and_place(tmp_path, data, where, why):
    path = tmp_path / "chorales.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as error:
        read_jsb_json(path)
    message = str(error.value)
    assert str(path) in message and where in message and why in message


def test_json_not_json_and_integral_floats(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"train": [[[60, 55')
    with pytest.raises(InputError, match="not valid JSON"):
        read_jsb_json(path)
    path.write_text(json.dumps(one_chorale([74.0, -1.0, 60.0, 48.0])))
    [grid] = read_jsb_json(path)["train"]
    assert grid.tolist() == [[74, -1, 60, 48]] and grid.dtype == np.int16


def test_bad_pickles_name_file_and_place(tmp_path):
    corrupt = tmp_path / "corrupt.pkl"
    corrupt.write_bytes(b"this is no pickle at all")
    with pytest.raises(InputError) as error:
        read_jsb_pickle(corrupt)
    assert str(corrupt) in str(error.value) and "not a readable pickle" in str(error.value)

    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(pickle.dumps({"train": [[(60, 64)]], "valid": [], "test": []})[:-5])
    with pytest.raises(InputError, match="not a readable pickle"):
        read_jsb_pickle(truncated)

    crowded = tmp_path / "crowded.pkl"
    chorale = [(48, 55, 64, 72), (48, 52, 55, 64, 72)]
    crowded.write_bytes(pickle.dumps({"train": [[(60,)]], "valid": [chorale], "test": []}))
    with pytest.raises(InputError) as error:
        read_jsb_pickle(crowded)
    message = str(error.value)
    assert str(crowded) in message and "valid[0][1]" in message and "5 pitches" in message


def test_npz_reads_and_refuses(tmp_path):
    rng = np.random.default_rng(3)
    grids = [random_grid(rng, 5), random_grid(rng, 9)]
    chorales = np.empty(2, dtype=object)
    chorales[:] = grids
    good = tmp_path / "good.npz"
    np.savez(good, train=chorales, valid=np.empty(0, dtype=object), test=chorales[:1])
    splits = read_jsb_npz(good)
    assert [len(splits[name]) for name in ("train", "valid", "test")] == [2, 0, 1]
    assert all(np.array_equal(a, b) for a, b in zip(splits["train"], grids, strict=True))

    grids[1][2, 3] = 200
    chorales[:] = grids
    bad = tmp_path / "bad.npz"
    np.savez(bad, train=np.empty(0, dtype=object), valid=np.empty(0, dtype=object), test=chorales)
    with pytest.raises(InputError) as error:
        read_jsb_npz(bad)
    message = str(error.value)
    assert str(bad) in message and "test[1][2]" in message and "pitch 200" in message

    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputError, match=r"corrupt\.npz"):
        read_jsb_npz(corrupt)


# --- tokens and transposition ----------------------------------------------------------------


def test_tokens_of_a_hand_written_grid():
    grid = np.array([[60, -1, 52, 0], [127, 64, -1, 36]], dtype=np.int16)
    # raster order S A T B per step; rest = 3, pitch p = 4 + p
    assert grid_to_tokens(grid).tolist() == [64, 3, 56, 4, 131, 68, 3, 40]
    assert grid_to_tokens(grid).dtype == np.int64
    assert (REST, PITCH, VOCAB_SIZE) == (3, 4, 132)
    for bad in (128, -2):
        with pytest.raises(ValueError, match=r"0\.\.127"):
            grid_to_tokens(np.array([[60, bad, 52, 48]]))


def test_tokens_round_trip_random_grids():
    rng = np.random.default_rng(0)
    for steps in (1, 7, 64):
        grid = random_grid(rng, steps)
        tokens = grid_to_tokens(grid)
        assert tokens.shape == (4 * steps,)
        assert tokens.min() >= REST and tokens.max() < VOCAB_SIZE
        assert np.array_equal(tokens_to_grid(tokens), grid)


def test_tokens_to_grid_tolerates_model_output():
    tokens = [START, 64, PAD, 3, 56, 4, 131, END, 70, 71]
    # START/PAD skipped, END stops, the partial second step is padded with rests
    assert tokens_to_grid(tokens).tolist() == [[60, -1, 52, 0], [127, -1, -1, -1]]
    assert tokens_to_grid([START, END]).shape == (0, 4)
    for bad in (VOCAB_SIZE, -1, 1000):
        with pytest.raises(ValueError, match="outside the grid block"):
            tokens_to_grid([64, 3, bad, 4])


def test_transpose_round_trip_and_range():
    rng = np.random.default_rng(1)
    grid = random_grid(rng, 32)
    up = transpose_grid(grid, 3)
    assert np.array_equal(up[grid == -1], grid[grid == -1])  # rests stay rests
    assert np.array_equal(up[grid != -1], grid[grid != -1] + 3)
    assert np.array_equal(transpose_grid(up, -3), grid)
    edge = np.array([[127, -1, 0, 60]], dtype=np.int16)
    assert transpose_grid(edge, 0).tolist() == edge.tolist()
    with pytest.raises(ValueError, match=r"0\.\.127"):
        transpose_grid(edge, 1)
    with pytest.raises(ValueError, match=r"0\.\.127"):
        transpose_grid(edge, -1)


# --- notes and MIDI --------------------------------------------------------------------------


def test_grid_to_notes_merges_held_pitches():
    grid = np.full((5, 4), -1, dtype=np.int16)
    grid[:, 0] = [60, 60, 62, -1, 62]
    grid[:, 3] = [48, 48, 48, 48, 43]
    notes = grid_to_notes(grid, step_seconds=0.25)
    expected = [  # sorted by start, then soprano before bass
        [60, 80, 0.0, 0.5],
        [48, 80, 0.0, 1.0],
        [62, 80, 0.5, 0.75],
        [62, 80, 1.0, 1.25],
        [43, 80, 1.0, 1.25],
    ]
    assert notes.dtype == np.float64 and notes.tolist() == expected


@pytest.mark.parametrize(("step_seconds", "per_quarter"), [(0.125, 4), (0.5, 1), (0.1, 4)])
def test_midi_plays_back_the_grid(tmp_path, step_seconds, per_quarter):
    import pretty_midi

    grid = random_grid(np.random.default_rng(2), 48)
    path = write_grid_midi(grid, tmp_path / "deep" / "out.mid", step_seconds, per_quarter)
    midi = pretty_midi.PrettyMIDI(str(path))
    assert [i.name for i in midi.instruments] == ["Soprano", "Alto", "Tenor", "Bass"]
    for voice, instrument in enumerate(midi.instruments):
        played = np.array(sorted((n.start, n.end, n.pitch, n.velocity) for n in instrument.notes))
        expected = grid_to_notes(grid[:, voice : voice + 1], step_seconds)
        expected = np.array(sorted(zip(*expected[:, [2, 3, 0, 1]].T, strict=True)))
        assert played.shape == expected.shape
        np.testing.assert_allclose(played, expected, atol=1e-3)
    # held notes were merged: fewer notes than sounding steps
    assert sum(len(i.notes) for i in midi.instruments) < (grid != -1).sum()
    assert midi.get_end_time() == pytest.approx(
        step_seconds * (np.flatnonzero((grid != -1).any(axis=1))[-1] + 1), abs=1e-3
    )
