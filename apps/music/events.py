"""Performance events (Oore et al. 2018, "This time with feeling", §3.2 and §6.1) ⇄ notes ⇄ MIDI:
the vocabulary the Music Transformer (Huang et al. 2019, §5.1) models on MAESTRO.

Tokens follow the specials of :mod:`apps.music.tokens`: 128 NOTE_ON (pitch), 128 NOTE_OFF (pitch),
100 TIME_SHIFT (k + 1 steps of 10 ms, 10 ms … 1 s) and 32 VELOCITY bins, 391 ids in all.

* Notes are float64 ``[N, 4]``: pitch, velocity, start (s), end (s), sorted by (start, pitch).
* Velocity bin of MIDI velocity v (1..127) is ``v // 4`` (= ``v * 32 // 128``); a bin decodes to its
  centre ``4 * bin + 2``. A VELOCITY event precedes a NOTE_ON only when the bin changes.
* Times are rounded to the nearest 10 ms step; a note of zero quantised length lasts one step. At
  equal times note-offs come before note-ons, so a re-struck pitch is a clean off-then-on. One pitch
  sounds once at a time: a note still sounding when its pitch is struck again ends at the re-strike,
  and of two notes struck on the same pitch at the same step only the longer is kept.
* :func:`read_midi` applies the sustain pedal (CC64 ≥ 64 is down) the way Magenta does: a note
  released while the pedal is down sounds until the pedal is lifted, or until its pitch is struck
  again, whichever is first (per instrument; a pedal never lifted is lifted at the end of the file).
"""

from __future__ import annotations

import warnings
from bisect import bisect_left, bisect_right
from pathlib import Path

import numpy as np

from apps.music.tokens import END, SPECIALS
from core.train import InputError

PITCHES = 128
MAX_SHIFT_STEPS = 100  # the longest single TIME_SHIFT, in steps (1 s)
VELOCITY_BINS = 32
STEP_SECONDS = 0.01
NOTE_ON = SPECIALS  # + pitch
NOTE_OFF = NOTE_ON + PITCHES  # + pitch
TIME_SHIFT = NOTE_OFF + PITCHES  # + (steps - 1)
VELOCITY = TIME_SHIFT + MAX_SHIFT_STEPS  # + bin
VOCAB_SIZE = VELOCITY + VELOCITY_BINS  # 391
DEFAULT_VELOCITY = 64  # for note-ons that come before any VELOCITY event
SUSTAIN = 64  # the damper-pedal controller


def velocity_bin(velocity: int) -> int:
    """The bin (0..31) of a MIDI velocity (1..127): ``v * 32 // 128``."""
    return min(int(velocity) * VELOCITY_BINS // 128, VELOCITY_BINS - 1)


def bin_velocity(b: int) -> int:
    """The MIDI velocity a bin decodes to: the centre of its four velocities."""
    return int(b) * (128 // VELOCITY_BINS) + 128 // VELOCITY_BINS // 2


def _checked(notes: np.ndarray) -> np.ndarray:
    """``notes`` as float64 ``[N, 4]``, refusing a pitch outside 0..127, a velocity outside 1..127
    and negative or non-finite times (ValueError naming the value; readers add the file)."""
    notes = np.asarray(notes, dtype=np.float64)
    if notes.size == 0:
        return np.zeros((0, 4))
    if notes.ndim != 2 or notes.shape[1] != 4:
        raise ValueError(f"notes must be [N, 4] (pitch, velocity, start, end), not {notes.shape}")
    pitch, velocity, times = notes[:, 0], np.round(notes[:, 1]), notes[:, 2:]
    checks = [
        ((pitch >= 0) & (pitch < PITCHES) & (pitch == np.round(pitch)), 0, "pitch", "0..127"),
        ((velocity >= 1) & (velocity <= 127), 1, "velocity", "1..127"),
        (np.isfinite(times).all(1) & (times[:, 0] >= 0), 2, "start", "finite and ≥ 0 s"),
        (np.isfinite(times[:, 1]), 3, "end", "finite"),
    ]
    for ok, column, name, expected in checks:
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise ValueError(f"note {i}: {name} {notes[i, column]:g} is not {expected}")
    return notes


def _steps(seconds: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(seconds) / STEP_SECONDS).astype(np.int64)


def _shifts(steps: int) -> list[int]:
    """TIME_SHIFT tokens for ``steps`` ≥ 0: as many 1 s shifts as fit, then the rest."""
    full, rest = divmod(int(steps), MAX_SHIFT_STEPS)
    return [TIME_SHIFT + MAX_SHIFT_STEPS - 1] * full + ([TIME_SHIFT + rest - 1] if rest else [])


def notes_to_events(notes: np.ndarray) -> np.ndarray:
    """Notes ``[N, 4]`` → event tokens ``[T]`` int64 (no START/END), times on the 10 ms grid."""
    notes = _checked(notes)
    pitch = notes[:, 0].astype(np.int64)
    start, end = _steps(notes[:, 2]), _steps(notes[:, 3])
    end = np.maximum(end, start + 1)  # a zero-length note still sounds for one step
    timeline: list[tuple[int, int, int, int]] = []  # (step, 0 = off / 1 = on, pitch, velocity)
    for p in np.unique(pitch):
        idx = np.flatnonzero(pitch == p)
        idx = idx[np.lexsort((end[idx], start[idx]))]
        for j, i in enumerate(idx):
            if j + 1 < len(idx) and start[idx[j + 1]] == start[i]:
                continue  # same pitch struck twice at one step: keep the later (longer) one
            stop = min(end[i], start[idx[j + 1]]) if j + 1 < len(idx) else end[i]
            timeline.append((int(start[i]), 1, int(p), round(notes[i, 1])))
            timeline.append((int(stop), 0, int(p), 0))
    timeline.sort()
    tokens: list[int] = []
    now, current_bin = 0, -1
    for step, is_on, p, velocity in timeline:
        tokens += _shifts(step - now)
        now = step
        if is_on:
            b = velocity_bin(velocity)
            if b != current_bin:
                tokens.append(VELOCITY + b)
                current_bin = b
            tokens.append(NOTE_ON + p)
        else:
            tokens.append(NOTE_OFF + p)
    return np.asarray(tokens, dtype=np.int64)


def events_to_notes(tokens: np.ndarray) -> np.ndarray:
    """Event tokens ``[T]`` → notes ``[N, 4]``, tolerant of what a model generates: specials are
    skipped and END stops; a note-off with no note on is ignored; a note-on for a sounding pitch
    ends the old note there; notes still on at the end close at the final time; a note that would
    last zero steps (closed at the step it began) is dropped, being silent."""
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= VOCAB_SIZE):
        bad = tokens[(tokens < 0) | (tokens >= VOCAB_SIZE)][0]
        raise ValueError(f"token {bad} outside the vocabulary 0..{VOCAB_SIZE - 1}")
    now, velocity = 0, DEFAULT_VELOCITY
    sounding: dict[int, tuple[int, int]] = {}  # pitch -> (start step, velocity)
    out: list[tuple[int, int, int, int]] = []

    def close(p: int) -> None:
        begun, v = sounding.pop(p)
        if now > begun:
            out.append((p, v, begun, now))

    for t in tokens.tolist():
        if t == END:
            break
        if NOTE_ON <= t < NOTE_OFF:
            if t - NOTE_ON in sounding:
                close(t - NOTE_ON)
            sounding[t - NOTE_ON] = (now, velocity)
        elif NOTE_OFF <= t < TIME_SHIFT:
            if t - NOTE_OFF in sounding:
                close(t - NOTE_OFF)
        elif TIME_SHIFT <= t < VELOCITY:
            now += t - TIME_SHIFT + 1
        elif t >= VELOCITY:
            velocity = bin_velocity(t - VELOCITY)
    for p in list(sounding):
        close(p)
    notes = np.asarray(out, dtype=np.float64).reshape(-1, 4)
    notes[:, 2:] *= STEP_SECONDS
    return notes[np.lexsort((notes[:, 0], notes[:, 2]))]


def transpose_events(tokens: np.ndarray, semitones: int) -> np.ndarray:
    """Tokens ``[T]`` with every NOTE_ON/NOTE_OFF moved by ``semitones``. A note pushed outside
    0..127 is dropped — its on and its off alike, since both move out (a VELOCITY event before a
    dropped note-on stays; it is harmless)."""
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    out = tokens.copy()
    is_note = (tokens >= NOTE_ON) & (tokens < TIME_SHIFT)
    base = np.where(tokens < NOTE_OFF, NOTE_ON, NOTE_OFF)
    pitch = tokens - base + int(semitones)
    keep = ~is_note | ((pitch >= 0) & (pitch < PITCHES))
    out[is_note] = (base + pitch)[is_note]
    return out[keep]


def stretch_events(tokens: np.ndarray, factor: float) -> np.ndarray:
    """Tokens ``[T]`` played ``factor`` times as long (the paper's 0.95–1.05 augmentation): each run
    of consecutive TIME_SHIFTs is summed, scaled, rounded half up to whole steps and re-split into
    ≤ 1 s shifts. The rounding error is carried to the next run, so every event time stays within
    half a step of ``factor`` × its old time; a run that rounds to 0 steps is dropped."""
    if not factor > 0:
        raise ValueError(f"stretch factor {factor} must be positive")
    out: list[int] = []
    run, carry = 0, 0.0

    def flush() -> None:
        nonlocal run, carry
        if run:
            exact = carry + run * factor
            steps = int(np.floor(exact + 0.5))
            carry = exact - steps
            out.extend(_shifts(steps))
            run = 0

    for t in np.asarray(tokens, dtype=np.int64).reshape(-1).tolist():
        if TIME_SHIFT <= t < VELOCITY:
            run += t - TIME_SHIFT + 1
        else:
            flush()
            out.append(t)
    flush()
    return np.asarray(out, dtype=np.int64)


def _pedal_intervals(instrument, end_of_file: float) -> tuple[list[float], list[float]]:
    """(down times, up times) of the sustain pedal; a pedal never lifted is lifted at the end."""
    downs: list[float] = []
    ups: list[float] = []
    for cc in sorted((c for c in instrument.control_changes if c.number == SUSTAIN),
                     key=lambda c: c.time):  # fmt: skip
        down = cc.value >= 64
        if down and len(downs) == len(ups):
            downs.append(cc.time)
        elif not down and len(downs) > len(ups):
            ups.append(cc.time)
    if len(downs) > len(ups):
        ups.append(max(end_of_file, downs[-1]))
    return downs, ups


def _sustained(instrument, end_of_file: float) -> list[tuple[int, int, float, float]]:
    """The instrument's notes (pitch, velocity, start, end) with the sustain pedal applied."""
    downs, ups = _pedal_intervals(instrument, end_of_file)
    starts: dict[int, list[float]] = {}
    for n in instrument.notes:
        starts.setdefault(n.pitch, []).append(n.start)
    for s in starts.values():
        s.sort()
    out = []
    for n in instrument.notes:
        end = n.end
        k = bisect_right(downs, n.end) - 1  # the pedal press at or before the release
        if k >= 0 and n.end < ups[k]:
            end = ups[k]
            same = starts[n.pitch]
            j = bisect_left(same, n.end)  # the first re-strike at or after the release
            if j < len(same):
                end = min(end, same[j])
        out.append((n.pitch, n.velocity, n.start, max(end, n.end)))
    return out


def read_midi(path: str | Path) -> np.ndarray:
    """Notes ``[N, 4]`` of every non-drum instrument of a MIDI file, merged, sustain pedal applied.
    A missing, empty, corrupt or note-less file raises InputError naming it."""
    import pretty_midi  # the music extra; imported here so the vocabulary needs no MIDI library

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file (expected a MIDI file)")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (expected a MIDI file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. tempo events on non-zero tracks: harmless
            midi = pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:  # mido and pretty_midi raise many kinds on bad bytes
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise InputError(f"{path}: not a readable MIDI file ({reason})") from exc
    end_of_file = midi.get_end_time()
    notes = [n for ins in midi.instruments if not ins.is_drum for n in _sustained(ins, end_of_file)]
    if not notes:
        drums = sum(len(ins.notes) for ins in midi.instruments if ins.is_drum)
        why = f"only {drums} drum notes" if drums else "no note events in any track"
        raise InputError(f"{path}: no notes ({why})")
    out = np.asarray(notes, dtype=np.float64)
    return out[np.lexsort((out[:, 0], out[:, 2]))]


def write_midi(notes: np.ndarray, path: str | Path, program: int = 0) -> None:
    """Write notes ``[N, 4]`` as a one-instrument MIDI file (General MIDI ``program``, 0 = piano),
    creating parent folders. A note shorter than one 10 ms step is lengthened to one step, as in
    :func:`notes_to_events`: an on and an off at the same tick would leave it hanging."""
    import pretty_midi

    notes = _checked(notes)
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=program, name="piano")
    for pitch, velocity, start, end in notes.tolist():
        piano.notes.append(
            pretty_midi.Note(round(velocity), int(pitch), start, max(start + STEP_SECONDS, end))
        )
    midi.instruments.append(piano)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.write(str(path))


def encode_file(path: str | Path) -> np.ndarray:
    """Event tokens ``[T]`` of a MIDI file; any problem raises InputError naming the file."""
    notes = read_midi(path)
    try:
        return notes_to_events(notes)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from exc
