"""The two token representations behind one interface: the JSB grid (four voices a 16th-note step,
serialised soprano-alto-tenor-bass, §4.1 of the Music Transformer) and performance events (Oore et
al. 2018, §4.2). The datamodule, the task and the figures only talk to a :class:`Representation`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from apps.music import chorales, events

Name = Literal["grid", "performance"]


@dataclass(frozen=True)
class Representation:
    """What the rest of the app needs to know about a token vocabulary.

    ``step_tokens``: tokens per time step (4 for the grid: crops start on a step; 1 for events).
    ``beat_tokens``: tokens per quarter note, for the attention-distance figure (None: no fixed beat).
    ``first_note_token``: the tokens from this id on are notes for NLL per note — the grid's cells
    (a pitch or a rest of one voice at one step: the paper's note-wise NLL); None for events,
    which report NLL per token only.
    """

    name: Name
    vocab_size: int
    step_tokens: int
    beat_tokens: int | None
    first_note_token: int | None

    def to_notes(self, tokens: np.ndarray) -> np.ndarray:
        """Tokens (specials allowed) → notes ``[N, 4]``: pitch, velocity, start s, end s."""
        if self.name == "grid":
            return chorales.grid_to_notes(chorales.tokens_to_grid(tokens))
        return events.events_to_notes(tokens)

    def write_midi(self, tokens: np.ndarray, path: Path) -> Path:
        """A playable MIDI of ``tokens`` (the grid: one instrument a voice)."""
        if self.name == "grid":
            chorales.write_grid_midi(chorales.tokens_to_grid(tokens), path)
        else:
            events.write_midi(events.events_to_notes(tokens), path)
        return path

    def transpose(self, tokens: np.ndarray, semitones: int) -> np.ndarray:
        """Every pitch moved by ``semitones`` (the paper's ±3 augmentation). A grid pushed outside
        0…127 is left as it is (JSB spans 36…88); events drop a note that would leave it."""
        if self.name == "performance":
            return events.transpose_events(tokens, semitones)
        pitched = tokens >= chorales.PITCH
        moved = tokens + np.where(pitched, semitones, 0)
        inside = (moved[pitched] >= chorales.PITCH) & (moved[pitched] < chorales.VOCAB_SIZE)
        return moved if inside.all() else tokens

    def stretch(self, tokens: np.ndarray, factor: float) -> np.ndarray:
        """Time stretched by ``factor`` (0.95…1.05 in the paper): events only; the grid's steps are
        score time."""
        return tokens if self.name == "grid" else events.stretch_events(tokens, factor)


GRID = Representation(
    "grid", chorales.VOCAB_SIZE, chorales.VOICES, 4 * chorales.VOICES, chorales.REST
)
PERFORMANCE = Representation("performance", events.VOCAB_SIZE, 1, None, None)
REPRESENTATIONS: dict[str, Representation] = {r.name: r for r in (GRID, PERFORMANCE)}


def token_notes(
    representation: Representation, tokens: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where each token sits in the music: its time (s) and pitch ``[L]`` each, pitch NaN for a
    token that starts no note (specials, rests, note-offs, time shifts, velocities; a grid cell
    holding the previous step's pitch still counts: the grid does not mark re-articulation)."""
    times = np.zeros(len(tokens))
    pitches = np.full(len(tokens), np.nan)
    if representation.name == "grid":
        cell = -1
        for i, token in enumerate(tokens):
            if token >= chorales.REST:
                cell += 1
                times[i] = (cell // chorales.VOICES) * chorales.STEP_SECONDS
                if token >= chorales.PITCH:
                    pitches[i] = token - chorales.PITCH
            else:
                times[i] = (max(cell, 0) // chorales.VOICES) * chorales.STEP_SECONDS
        return times, pitches
    now = 0.0
    for i, token in enumerate(tokens):
        if events.TIME_SHIFT <= token < events.TIME_SHIFT + events.MAX_SHIFT_STEPS:
            now += (token - events.TIME_SHIFT + 1) * events.STEP_SECONDS
        elif events.NOTE_ON <= token < events.NOTE_ON + 128:
            pitches[i] = token - events.NOTE_ON
        times[i] = now
    return times, pitches
