"""The JSB chorales as a voice grid: readers for the three released encodings, the token
serialisation of the Music Transformer's chorale experiments, transposition and grid → MIDI.

A grid is ``[T, 4]`` int16: one row per time step (a 16th note for the JSON, NPZ and music21 data,
a quarter note for the Boulanger-Lewandowski pickle), columns soprano, alto, tenor, bass; a value is
a MIDI pitch 0..127 or ``-1`` for a silent voice. A held note repeats its pitch on every step (the
JSB convention), so two repeated notes and one long note look the same.

Tokens (Huang et al. 2019, section 3.1): the grid is read in raster order, step by step, soprano
alto tenor bass; a rest is ``REST`` and pitch ``p`` is ``PITCH + p``, after the shared specials of
``apps.music.tokens``.

Every reader validates the whole file through :func:`check_splits` and raises ``InputError``
naming the file and the place (``train[3][17]``); nothing is dropped silently.
"""

from __future__ import annotations

import itertools
import json
import pickle
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from apps.music.tokens import END, PAD, SPECIALS, START
from core.train.errors import InputError

VOICES = 4  # soprano, alto, tenor, bass
VOICE_NAMES = ("Soprano", "Alto", "Tenor", "Bass")
REST = SPECIALS  # a silent voice at one step
PITCH = SPECIALS + 1  # MIDI pitch p is token PITCH + p
PITCHES = 128
VOCAB_SIZE = PITCH + PITCHES  # 132
SPLITS = ("train", "valid", "test")

# One 16th note lasts 0.125 s: a quarter at 120 bpm (JSB's own files play a quarter at 60 bpm,
# which sounds sluggish); pass step_seconds=0.5 and steps_per_quarter=1 for the quarter-note pickle.
STEP_SECONDS = 0.125
VELOCITY = 80
CHOIR = 52  # General MIDI "Choir Aahs": sustains held notes, fits a chorale

Splits = dict[str, list[np.ndarray]]


def _as_step(step: object, where: str) -> list[int]:
    """One step → 4 ints, each -1 or 0..127 (integral floats such as 74.0 accepted)."""
    try:
        values = list(step)  # type: ignore[call-overload]
    except TypeError:
        raise InputError(
            f"{where}: a step must be a list of {VOICES} pitches, got {step!r}"
        ) from None
    if len(values) != VOICES:
        raise InputError(f"{where}: {len(values)} voices, expected {VOICES} (S A T B)")
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise InputError(f"{where}: {value!r} is not a number")
        if not float(value).is_integer():
            raise InputError(f"{where}: pitch {value!r} is not an integer")
        pitch = int(value)
        if pitch != -1 and not 0 <= pitch < PITCHES:
            raise InputError(f"{where}: pitch {pitch} is outside 0..127 (or -1 for a rest)")
        out.append(pitch)
    return out


def _holds_bool(array: np.ndarray, chorale: Iterable) -> bool:
    """Whether a list of steps hides a true/false, which NumPy would silently read as 1/0."""
    return array.dtype.kind in "iu" and any(
        isinstance(value, bool | np.bool_) for step in chorale for value in step
    )


def _as_grid(chorale: object, where: str) -> np.ndarray:
    """One chorale (steps of 4 pitches) → grid [T, 4] int16, validated step by step on failure."""
    if isinstance(chorale, str | bytes | Mapping) or not isinstance(chorale, Iterable):
        raise InputError(
            f"{where}: a chorale must be a list of steps, got {type(chorale).__name__}"
        )
    try:
        array = np.asarray(chorale)
    except (TypeError, ValueError):  # ragged or odd: the slow path below finds the culprit
        array = None
    if (
        array is not None
        and array.ndim == 2
        and array.shape[1] == VOICES
        and array.dtype.kind in "iuf"
        and (isinstance(chorale, np.ndarray) or not _holds_bool(array, chorale))
    ):
        if len(array) == 0:
            raise InputError(f"{where}: the chorale has no steps")
        bad = (array != np.round(array)) | ((array != -1) & ((array < 0) | (array >= PITCHES)))
        if not bad.any():
            return array.astype(np.int16)
        step = int(np.argwhere(bad)[0, 0])
        _as_step(array[step].tolist(), f"{where}[{step}]")  # raises with the exact reason
    steps = [_as_step(step, f"{where}[{t}]") for t, step in enumerate(chorale)]
    if not steps:
        raise InputError(f"{where}: the chorale has no steps")
    return np.asarray(steps, dtype=np.int16)


def check_splits(data: object, path: str | Path) -> Splits:
    """``{"train", "valid", "test"}`` → chorales → steps → 4 pitches, validated, as grids [T, 4].

    Shared by every reader. An empty split is allowed, but not a file without any chorale."""
    if not isinstance(data, Mapping):
        raise InputError(
            f"{path}: expected a mapping with keys {list(SPLITS)}, got {type(data).__name__}"
        )
    keys = set(map(str, data))
    if keys != set(SPLITS):
        missing, extra = sorted(set(SPLITS) - keys), sorted(keys - set(SPLITS))
        raise InputError(
            f"{path}: expected the splits {list(SPLITS)} (missing {missing}, unexpected {extra})"
        )
    splits: Splits = {}
    for split in SPLITS:
        chorales = data[split]
        if isinstance(chorales, str | bytes | Mapping) or not isinstance(chorales, Iterable):
            raise InputError(f"{path}: {split}: expected a list of chorales")
        splits[split] = [
            _as_grid(chorale, f"{path}: {split}[{i}]") for i, chorale in enumerate(chorales)
        ]
    if not any(splits.values()):
        raise InputError(f"{path}: no chorales in any split")
    return splits


def read_jsb_json(path: str | Path) -> Splits:
    """Jsb16thSeparated.json: ``{"train", "valid", "test"}`` → chorales → 16th steps → S A T B."""
    path = Path(path)
    try:
        with path.open() as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (expected the JSB chorales JSON)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None
    return check_splits(data, path)


def read_jsb_npz(path: str | Path) -> Splits:
    """The NPZ variant: arrays ``train``/``valid``/``test``, each an object array of [T, 4] grids
    (or one [N, T, 4] array). Loads with ``allow_pickle=True``: only open files you trust."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=True) as archive:
            data = {name: list(archive[name]) for name in archive.files}
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (expected the JSB chorales NPZ)") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, pickle.UnpicklingError) as error:
        raise InputError(f"{path}: not a readable NPZ archive ({error})") from None
    return check_splits(data, path)


def chord_to_step(chord: Iterable[object], where: str) -> list[object]:
    """A pickle chord (the sounding pitches, voices unknown) → S A T B, outer voices first.

    Highest pitch → soprano, lowest → bass, the rest downwards into alto then tenor; a missing
    inner voice is a rest: (p,) → [p, -1, -1, -1], (l, h) → [h, -1, -1, l],
    (l, m, h) → [h, m, -1, l]. The bass is almost never silent in a chorale, and a chord with
    fewer than 4 pitches is nearly always two voices in unison merged by the piano roll, so this
    keeps the bass in its column and invents no note. More than 4 pitches → InputError."""
    pitches = list(chord)
    if len(pitches) > VOICES:
        raise InputError(
            f"{where}: {len(pitches)} pitches in one chord, at most {VOICES} (S A T B)"
        )
    try:
        pitches.sort(reverse=True)
    except TypeError:
        raise InputError(f"{where}: the chord {tuple(pitches)!r} holds a non-number") from None
    if len(pitches) <= 1:
        return pitches + [-1] * (VOICES - len(pitches))
    return pitches[:-1] + [-1] * (VOICES - len(pitches)) + pitches[-1:]


def read_jsb_pickle(path: str | Path) -> Splits:
    """Boulanger-Lewandowski's JSB pickle (quarter-note steps): ``{train, valid, test}`` →
    chorales → chords (tuples of sounding pitches, maybe empty = all rest), voiced by
    :func:`chord_to_step`. Unpickling runs code from the file: only open files you trust."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = pickle.load(handle, encoding="latin1")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (expected the JSB chorales pickle)") from None
    except Exception as error:  # a corrupt pickle can raise nearly anything
        raise InputError(
            f"{path}: not a readable pickle ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(data, Mapping):
        raise InputError(
            f"{path}: expected a mapping with keys {list(SPLITS)}, got {type(data).__name__}"
        )
    voiced = {}
    for split, chorales in data.items():
        if split not in SPLITS or not isinstance(chorales, list | tuple):
            voiced[split] = chorales  # check_splits names the problem
            continue
        voiced[split] = [
            [_voice(chord, f"{path}: {split}[{i}][{t}]") for t, chord in enumerate(chorale)]
            if isinstance(chorale, list | tuple)
            else chorale
            for i, chorale in enumerate(chorales)
        ]
    return check_splits(voiced, path)


def _voice(chord: object, where: str) -> object:
    if isinstance(chord, str | bytes) or not isinstance(chord, Iterable):
        return chord  # _as_step names the problem
    return chord_to_step(chord, where)


def grid_to_tokens(grid: np.ndarray) -> np.ndarray:
    """Grid [T, 4] → tokens [T * 4] int64 in raster order (S A T B per step); no START/END."""
    grid = np.asarray(grid)
    if grid.ndim != 2 or grid.shape[1] != VOICES:
        raise ValueError(f"expected a grid [T, {VOICES}], got shape {list(grid.shape)}")
    grid = grid.astype(np.int64)
    if ((grid != -1) & ((grid < 0) | (grid >= PITCHES))).any():
        raise ValueError("a grid holds MIDI pitches 0..127 or -1 for a rest")
    return np.where(grid == -1, REST, PITCH + grid).reshape(-1)


def tokens_to_grid(tokens: Iterable[int] | np.ndarray) -> np.ndarray:
    """Tokens → grid [T, 4] int16, tolerant of model output: PAD and START are skipped, END stops,
    a trailing partial step is filled with rests; a token outside the grid block → ValueError."""
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    ends = np.flatnonzero(tokens == END)
    if len(ends):
        tokens = tokens[: ends[0]]
    tokens = tokens[(tokens != PAD) & (tokens != START)]
    bad = (tokens < REST) | (tokens >= VOCAB_SIZE)
    if bad.any():
        raise ValueError(
            f"token {int(tokens[bad][0])} is outside the grid block {REST}..{VOCAB_SIZE - 1}"
        )
    tokens = np.concatenate([tokens, np.full(-len(tokens) % VOICES, REST, dtype=np.int64)])
    return np.where(tokens == REST, -1, tokens - PITCH).reshape(-1, VOICES).astype(np.int16)


def transpose_grid(grid: np.ndarray, semitones: int) -> np.ndarray:
    """Grid [T, 4] shifted by ``semitones`` (rests stay rests), as a new array.

    A pitch pushed outside 0..127 raises ValueError instead of being folded by octaves: the JSB
    range (36..96) leaves ample room for the paper's small transpositions, so it means a bug."""
    grid = np.asarray(grid)
    sounding = grid >= 0
    shifted = np.where(sounding, grid.astype(np.int64) + int(semitones), -1)
    if (sounding & ((shifted < 0) | (shifted >= PITCHES))).any():
        low, high = grid[sounding].min(), grid[sounding].max()
        raise ValueError(
            f"transposing pitches {low}..{high} by {semitones} leaves the MIDI range 0..127"
        )
    return shifted.astype(np.int16)


def grid_to_notes(grid: np.ndarray, step_seconds: float = STEP_SECONDS) -> np.ndarray:
    """Grid [T, 4] → notes [N, 4] float64 (pitch, velocity, start, end in seconds), repeated pitches
    of one voice merged into one note (the JSB convention); sorted by start, then voice S A T B."""
    grid = np.asarray(grid)
    notes = []  # (start step, voice, pitch, end step)
    for voice in range(grid.shape[1]):
        column = grid[:, voice].astype(np.int64)
        changes = np.flatnonzero(np.diff(column, prepend=-2, append=-2))  # run boundaries
        for start, end in itertools.pairwise(changes):
            if column[start] >= 0:
                notes.append((start, voice, column[start], end))
    notes.sort()
    out = np.zeros((len(notes), 4), dtype=np.float64)
    for row, (start, _, pitch, end) in enumerate(notes):
        out[row] = (pitch, VELOCITY, start * step_seconds, end * step_seconds)
    return out


def write_grid_midi(
    grid: np.ndarray,
    path: str | Path,
    step_seconds: float = STEP_SECONDS,
    steps_per_quarter: int = 4,
    program: int = CHOIR,
) -> Path:
    """Write grid [T, 4] as a MIDI file: one instrument (track) per voice, named Soprano … Bass,
    General MIDI ``program`` (choir by default); the tempo is set so one step is exactly
    ``step_seconds`` and a quarter is ``steps_per_quarter`` steps. Creates parent folders."""
    import pretty_midi  # the optional "music" extra; only needed here

    path = Path(path)
    tempo = 60.0 / (step_seconds * steps_per_quarter)
    midi = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=tempo)
    instruments = [pretty_midi.Instrument(program=program, name=name) for name in VOICE_NAMES]
    grid = np.asarray(grid)
    for voice in range(VOICES):
        notes = grid_to_notes(grid[:, voice : voice + 1], step_seconds)
        for pitch, velocity, start, end in notes:
            instruments[voice].notes.append(
                pretty_midi.Note(velocity=int(velocity), pitch=int(pitch), start=start, end=end)
            )
    midi.instruments.extend(instruments)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.write(str(path))
    return path
