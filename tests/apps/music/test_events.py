"""Performance events ⇄ notes ⇄ MIDI: the token layout, round trips (in memory, through files), the
sustain pedal, the augmentations and the errors. Every MIDI file is built here in ``tmp_path``."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest

from apps.music import events as ev
from apps.music.events import (
    NOTE_OFF,
    NOTE_ON,
    TIME_SHIFT,
    VELOCITY,
    encode_file,
    events_to_notes,
    notes_to_events,
    read_midi,
    stretch_events,
    transpose_events,
    write_midi,
)
from apps.music.tokens import END, PAD, START
from core.train import InputError

BIN_WIDTH = 128 // ev.VELOCITY_BINS


def shift(steps: int) -> int:
    return TIME_SHIFT + steps - 1


def random_notes(seed: int = 0, onsets: int = 120) -> np.ndarray:
    """Sustain-free notes at continuous times: chords, a pitch re-struck right where it ended
    (legato), gaps of 1.2–3.5 s; notes last ≥ 15 ms (shorter ones are tested on their own), one
    pitch never overlaps itself, onsets are ≥ 20 ms apart."""
    rng = np.random.default_rng(seed)
    t, free = 0.0, {p: 0.0 for p in range(55, 67)}  # a narrow range, so pitches repeat often
    gaps = np.where(rng.random(onsets) < 0.1, rng.uniform(1.2, 3.5, onsets),
                    rng.uniform(0.02, 0.6, onsets))  # fmt: skip
    notes = []
    for gap in gaps:
        ready = [p for p, until in free.items() if until <= t]
        for p in rng.choice(ready, size=min(len(ready), rng.integers(1, 5)), replace=False):
            length = gap if rng.random() < 0.3 else rng.uniform(0.015, 2)
            notes.append((p, rng.integers(1, 128), t, t + length))
            free[int(p)] = t + length
        t += gap
    notes = np.asarray(notes, dtype=np.float64)
    return notes[np.lexsort((notes[:, 0], notes[:, 2]))]


def assert_close(got: np.ndarray, want: np.ndarray, tol: float = ev.STEP_SECONDS) -> None:
    """Same notes: pitch exact, times within ``tol``, velocity within one bin width."""
    assert got.shape == want.shape
    np.testing.assert_array_equal(got[:, 0], want[:, 0])
    np.testing.assert_allclose(got[:, 2:], want[:, 2:], rtol=0, atol=tol + 1e-9)
    assert np.abs(got[:, 1] - want[:, 1]).max() <= BIN_WIDTH


def piano(notes, pedal=(), program: int = 0, drum: bool = False) -> pretty_midi.Instrument:
    ins = pretty_midi.Instrument(program=program, is_drum=drum)
    ins.notes = [pretty_midi.Note(v, p, s, e) for p, v, s, e in notes]
    ins.control_changes = [pretty_midi.ControlChange(64, value, time) for time, value in pedal]
    return ins


def write(path, *instruments) -> None:
    midi = pretty_midi.PrettyMIDI()
    midi.instruments.extend(instruments)
    midi.write(str(path))


# --- the vocabulary ------------------------------------------------------------------------------


def test_layout_matches_the_paper():
    assert (NOTE_ON, NOTE_OFF, TIME_SHIFT, VELOCITY, ev.VOCAB_SIZE) == (3, 131, 259, 359, 391)
    assert ev.velocity_bin(1) == 0 and ev.velocity_bin(127) == 31 and ev.velocity_bin(80) == 20
    assert all(abs(ev.bin_velocity(ev.velocity_bin(v)) - v) <= 2 for v in range(1, 128))


def test_hand_encoded_piece():
    # C4 at 0–0.5 s (velocity 80 → bin 20), re-struck at 0.5 s until 0.8 s at the same bin, then
    # E4 2.5 s later (bin 31): the gap is split 100 + 100 + 50 steps, off before on at 0.5 s.
    notes = [(60, 80, 0.0, 0.5), (60, 81, 0.5, 0.8), (64, 127, 3.3, 3.304)]
    want = [VELOCITY + 20, NOTE_ON + 60, shift(50), NOTE_OFF + 60, NOTE_ON + 60, shift(30),
            NOTE_OFF + 60, shift(100), shift(100), shift(50), VELOCITY + 31, NOTE_ON + 64,
            shift(1), NOTE_OFF + 64]  # fmt: skip
    got = notes_to_events(np.array(notes))
    assert got.dtype == np.int64
    assert got.tolist() == want


def test_round_trip_in_memory():
    notes = random_notes()
    # the generator gives what the test is for: gaps > 1 s, chords, a pitch struck again right
    # where it ended
    assert (np.diff(notes[:, 2]) > 1).any()
    assert np.unique(notes[:, 2], return_counts=True)[1].max() > 1
    assert {(p, e) for p, _, _, e in notes} & {(p, s) for p, _, s, _ in notes}
    tokens = notes_to_events(notes)
    assert tokens.min() >= NOTE_ON and tokens.max() < ev.VOCAB_SIZE
    assert_close(events_to_notes(tokens), notes)


def test_velocity_only_when_the_bin_changes():
    notes = np.array([(60, 64, 0, 1), (62, 65, 0, 1), (64, 67, 1, 2), (65, 68, 1, 2)], float)
    tokens = notes_to_events(notes)
    assert [t - VELOCITY for t in tokens if t >= VELOCITY] == [16, 17]


def test_zero_length_and_same_pitch_overlaps():
    # a zero-length note lasts one step; a note still sounding when re-struck ends at the
    # re-strike; two strikes of one pitch at one step keep the longer
    notes = np.array([(50, 64, 1.0, 1.0), (60, 64, 0.0, 1.0), (60, 64, 0.4, 0.6),
                      (70, 64, 0.2, 0.3), (70, 64, 0.2, 0.9)])  # fmt: skip
    got = events_to_notes(notes_to_events(notes))
    want = [(60, 66, 0.0, 0.4), (70, 66, 0.2, 0.9), (60, 66, 0.4, 0.6), (50, 66, 1.0, 1.01)]
    np.testing.assert_allclose(got, np.array(want), atol=1e-9)


def test_decoding_tolerates_model_output():
    tokens = [START, NOTE_OFF + 40, VELOCITY + 10, NOTE_ON + 60, shift(10), NOTE_ON + 60, PAD,
              shift(5), NOTE_ON + 61, NOTE_ON + 62, NOTE_OFF + 62, shift(20), END,
              NOTE_ON + 70, shift(50)]  # fmt: skip
    got = events_to_notes(np.array(tokens))
    # 60 re-struck at 0.10 s; notes still on at the end close at 0.35 s; 62 lasted no time:
    # dropped; nothing after END
    want = [(60, 42, 0.0, 0.10), (60, 42, 0.10, 0.35), (61, 42, 0.15, 0.35)]
    np.testing.assert_allclose(got, np.array(want), atol=1e-9)
    assert events_to_notes(np.array([], np.int64)).shape == (0, 4)
    with pytest.raises(ValueError, match="391"):
        events_to_notes(np.array([ev.VOCAB_SIZE]))


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [(0, 128, "128"), (0, -1, "-1"), (0, 60.5, "60.5"), (1, 0, "velocity 0"), (2, -0.5, "-0.5")],
)
def test_bad_notes_are_refused(column, value, shown):
    notes = np.array([(60, 64, 0.0, 1.0), (62, 64, 0.5, 1.0)])
    notes[1, column] = value
    with pytest.raises(ValueError, match=shown):
        notes_to_events(notes)


# --- augmentation --------------------------------------------------------------------------------


def test_transpose():
    tokens = notes_to_events(random_notes(1, 40))
    up = transpose_events(tokens, 3)
    assert transpose_events(up, -3).tolist() == tokens.tolist()
    moved = events_to_notes(up)
    want = events_to_notes(tokens)
    want[:, 0] += 3
    np.testing.assert_array_equal(moved, want)

    edge = notes_to_events(np.array([(60, 64, 0.0, 1.0), (126, 64, 0.5, 2.0)]))
    up = transpose_events(edge, 3)
    assert len(up) == len(edge) - 2  # the on and the off of 126 + 3 = 129
    np.testing.assert_allclose(events_to_notes(up), [(63, 66, 0.0, 1.0)], atol=1e-9)


def event_times(tokens: np.ndarray) -> tuple[list[int], list[int]]:
    """(non-shift tokens, the step at which each happens)."""
    now, kept, times = 0, [], []
    for t in tokens.tolist():
        if TIME_SHIFT <= t < VELOCITY:
            now += t - TIME_SHIFT + 1
        else:
            kept.append(t)
            times.append(now)
    return kept, times


def test_stretch_scales_time():
    tokens = notes_to_events(random_notes(2, 60))
    assert stretch_events(tokens, 1.0).tolist() == tokens.tolist()
    kept, times = event_times(tokens)
    for factor in (0.95, 1.05, 1.5):
        stretched = stretch_events(tokens, factor)
        kept2, times2 = event_times(stretched)
        assert kept2 == kept  # only the time shifts change
        assert np.abs(np.array(times2) - factor * np.array(times)).max() <= 0.5 + 1e-9
    # two 1 s shifts at 1.05 are 210 steps: 100 + 100 + 10; a lone step at 0.4 rounds to 0: dropped
    long = [NOTE_ON + 60, shift(100), shift(100), NOTE_OFF + 60]
    assert stretch_events(np.array(long), 1.05).tolist() == [
        NOTE_ON + 60, shift(100), shift(100), shift(10), NOTE_OFF + 60]  # fmt: skip
    assert stretch_events(np.array([NOTE_ON, shift(1), NOTE_OFF]), 0.95).tolist() == [
        NOTE_ON, shift(1), NOTE_OFF]  # fmt: skip
    assert stretch_events(np.array([NOTE_ON, shift(1), NOTE_OFF]), 0.4).tolist() == [
        NOTE_ON, NOTE_OFF]  # fmt: skip


# --- MIDI files ----------------------------------------------------------------------------------


def test_sustain_pedal(tmp_path):
    notes = [
        (60, 70, 0.0, 1.0),  # released at 1.0 under the pedal (down 0.5–2.0): ends at 2.0
        (64, 70, 0.2, 0.4),  # released before the pedal goes down: unchanged
        (67, 70, 0.6, 1.2),  # released under the pedal, re-struck at 1.5: ends at 1.5
        (67, 70, 1.5, 1.7),  # the re-strike, released under the pedal: ends at 2.0
        (72, 70, 1.8, 2.5),  # released after the pedal is up: unchanged
        (71, 70, 3.0, 3.2),  # pedal down at 3.0, never lifted: ends at the end of the file (4.0)
    ]
    pedal = [(0.5, 127), (1.0, 64), (2.0, 63), (3.0, 100)]  # 64 is still down, 63 is up
    ins = piano(notes, pedal)
    ins.control_changes.append(pretty_midi.ControlChange(7, 100, 4.0))  # volume, ends the file
    drums = piano([(36, 100, 0.0, 0.1)], drum=True)
    write(tmp_path / "pedal.mid", ins, drums)
    got = read_midi(tmp_path / "pedal.mid")
    want = [(60, 70, 0.0, 2.0), (64, 70, 0.2, 0.4), (67, 70, 0.6, 1.5), (67, 70, 1.5, 2.0),
            (72, 70, 1.8, 2.5), (71, 70, 3.0, 4.0)]  # fmt: skip
    want = np.array(sorted(want, key=lambda n: (n[2], n[0])), float)
    np.testing.assert_allclose(got, want, atol=3e-3)  # ticks of 1/440 s at 120 bpm


def test_pedal_is_per_instrument(tmp_path):
    write(tmp_path / "two.mid", piano([(60, 70, 0.0, 1.0)], [(0.5, 127), (2.0, 0)]),
          piano([(62, 70, 0.0, 1.0)], program=40))  # fmt: skip
    got = read_midi(tmp_path / "two.mid")
    np.testing.assert_allclose(got[:, 3], [2.0, 1.0], atol=3e-3)


def test_write_then_read(tmp_path):
    notes = random_notes(3, 50)
    path = tmp_path / "deep" / "er" / "out.mid"
    write_midi(notes, path)
    assert_close(read_midi(path), notes, tol=3e-3)  # ticks of 1/440 s at 120 bpm
    write_midi(np.array([(60, 64, 1.0, 1.0), (62, 64, 1.0, 1.5)]), tmp_path / "short.mid")
    np.testing.assert_allclose(read_midi(tmp_path / "short.mid")[:, 3], [1.01, 1.5], atol=3e-3)
    assert_close(events_to_notes(encode_file(path)), notes, tol=ev.STEP_SECONDS + 3e-3)
    write_midi(notes, tmp_path / "organ.mid", program=19)
    assert pretty_midi.PrettyMIDI(str(tmp_path / "organ.mid")).instruments[0].program == 19


def test_bad_files(tmp_path):
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.mid"
    empty.write_bytes(b"")
    silent = tmp_path / "silent.mid"
    write(silent, piano([]))
    drums = tmp_path / "drums.mid"
    write(drums, piano([(36, 100, 0.0, 0.1)], drum=True))
    cases = [(corrupt, "not a readable MIDI file"), (empty, "empty"), (silent, "no notes"),
             (drums, "no notes \\(only 1 drum"), (tmp_path / "missing.mid", "no such file")]  # fmt: skip
    for path, what in cases:
        for read in (read_midi, encode_file):
            with pytest.raises(InputError, match=what) as caught:
                read(path)
            assert str(path) in str(caught.value) and "\n" not in str(caught.value)
