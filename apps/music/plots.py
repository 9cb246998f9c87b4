"""Figures of the music app: a piano roll of a generated continuation beside its primer, each head's
attention against relative distance (which heads follow the beat or the bar), and arcs from notes
to the earlier notes they attend most."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

PRIMER_COLOUR, CONTINUATION_COLOUR = "0.55", "tab:blue"


def draw_notes(ax: Axes, notes: np.ndarray, colour: str, label: str) -> None:
    """Notes ``[N, 4]`` (pitch, velocity, start, end) as bars, opacity by velocity."""
    for pitch, velocity, start, end in notes:
        ax.add_patch(
            plt.Rectangle(
                (start, pitch - 0.4), max(end - start, 0.01), 0.8,
                color=colour, alpha=0.35 + 0.65 * velocity / 127, linewidth=0,
            )
        )  # fmt: skip
    ax.plot([], [], color=colour, linewidth=6, label=label)


def frame_roll(ax: Axes, notes: np.ndarray) -> None:
    """Axis limits around ``notes`` and the usual labels."""
    if len(notes):
        ax.set_xlim(0, notes[:, 3].max() * 1.02)
        ax.set_ylim(notes[:, 0].min() - 2, notes[:, 0].max() + 2)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("MIDI pitch")


def piano_roll_figure(
    primer: np.ndarray, continuation: np.ndarray, cut: float, title: str
) -> Figure:
    """The primer's notes in grey, the model's continuation in colour, split by a line at ``cut``
    (the time the continuation starts, s)."""
    fig, ax = plt.subplots(figsize=(11, 4.2))
    draw_notes(ax, primer, PRIMER_COLOUR, "primer")
    draw_notes(ax, continuation, CONTINUATION_COLOUR, "generated")
    frame_roll(ax, np.concatenate([primer, continuation]))
    if np.isfinite(cut):
        ax.axvline(cut, color="k", linewidth=0.8, linestyle="--")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    return fig


def distance_profile(weights: torch.Tensor, max_distance: int) -> np.ndarray:
    """Mean attention weight each head gives the key ``d`` tokens back, d = 0 … max_distance:
    ``weights [H, L, L]`` (causal) → ``[H, max_distance + 1]`` (the mean over queries i ≥ d of
    ``w[h, i, i − d]``)."""
    heads, length, _ = weights.shape
    distances = min(max_distance, length - 1) + 1
    profile = np.zeros((heads, max_distance + 1))
    for d in range(distances):
        profile[:, d] = weights.diagonal(-d, dim1=1, dim2=2).mean(-1).numpy()
    return profile


def distance_figure(profiles: dict[str, np.ndarray], beat_tokens: int | None, title: str) -> Figure:
    """One row per head and layer: attention by relative distance (each row scaled to its peak),
    with lines at every beat and a heavier one at every bar (4 beats) when the grid has them."""
    rows = [(f"{layer} h{h}", p[h]) for layer, p in profiles.items() for h in range(len(p))]
    table = np.stack([row / max(row.max(), 1e-12) for _, row in rows])
    fig, ax = plt.subplots(figsize=(11, 0.9 + 0.22 * len(rows)))
    image = ax.imshow(table, aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_yticks(range(len(rows)), [name for name, _ in rows], fontsize=6)
    ax.set_xlabel("relative distance (tokens back)")
    if beat_tokens:
        for d in range(beat_tokens, table.shape[1], beat_tokens):
            bar = d % (4 * beat_tokens) == 0
            ax.axvline(d, color="white", linewidth=1.2 if bar else 0.4, alpha=0.8)
    fig.colorbar(image, ax=ax, label="mean weight / the row's largest", fraction=0.03)
    ax.set_title(title)
    return fig


def arcs_figure(
    notes: np.ndarray,
    times: np.ndarray,
    pitches: np.ndarray,
    weights: torch.Tensor,
    queries: int,
    per_query: int,
    title: str,
) -> Figure:
    """Over the piano roll of ``notes``, arcs from ``queries`` notes of the later half to the
    ``per_query`` earlier notes they attend most. ``times``/``pitches [L]``: where each token
    sits (pitch NaN: no note); ``weights [L, L]``: attention averaged over heads."""
    fig, ax = plt.subplots(figsize=(11, 4.6))
    draw_notes(ax, notes, "0.7", "notes")
    frame_roll(ax, notes)
    is_note = ~np.isnan(pitches)
    candidates = np.flatnonzero(is_note[len(is_note) // 2 :]) + len(is_note) // 2
    chosen = candidates[
        np.linspace(0, len(candidates) - 1, min(queries, len(candidates))).astype(int)
    ]
    colours = plt.cm.tab10(np.arange(len(chosen)) % 10)
    for colour, query in zip(colours, chosen, strict=True):
        row = weights[query, :query].numpy() * is_note[:query]
        for key in np.argsort(row)[::-1][:per_query]:
            if row[key] <= 0:
                continue
            ax.add_patch(
                FancyArrowPatch(
                    (times[query], pitches[query]), (times[key], pitches[key]),
                    connectionstyle="arc3,rad=-0.3", arrowstyle="-|>", mutation_scale=8,
                    color=colour, linewidth=0.6 + 4 * float(row[key]), alpha=0.85,
                )
            )  # fmt: skip
        ax.plot(times[query], pitches[query], "o", color=colour, markersize=5)
    ax.set_title(title)
    return fig
