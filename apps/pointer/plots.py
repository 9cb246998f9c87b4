"""Figures: predicted hull / triangles / tour over the points, next to the target."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def draw_output(
    ax: plt.Axes, problem: str, points: np.ndarray, sequence: np.ndarray, color: str
) -> None:
    """Draw one 1-based output sequence over ``points`` [n, 2] on ``ax``."""
    ax.scatter(points[:, 0], points[:, 1], s=8, c="black", zorder=3)
    if problem == "delaunay":
        whole = len(sequence) - len(sequence) % 3
        for triangle in sequence[:whole].reshape(-1, 3):
            xy = points[np.append(triangle, triangle[0]) - 1]
            ax.plot(xy[:, 0], xy[:, 1], color=color, lw=0.8)
    elif len(sequence):
        xy = points[sequence - 1]
        ax.plot(xy[:, 0], xy[:, 1], color=color, lw=1.2, marker="o", ms=2)
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xticks=[], yticks=[], aspect="equal")


def examples_figure(
    problem: str,
    points: Sequence[np.ndarray],
    predictions: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    correct: Sequence[float],
) -> plt.Figure:
    """A grid of examples: each a pair of panels, prediction (green if correct, red if not) | target."""
    count = len(points)
    columns = min(count, 4)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, 2 * columns, figsize=(3.0 * columns, 1.6 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        example, is_target = divmod(k, 2)
        if example >= count:
            ax.axis("off")
            continue
        if is_target:
            draw_output(ax, problem, points[example], targets[example], "tab:blue")
            ax.set_title("target", fontsize=7)
        else:
            color = "tab:green" if correct[example] else "tab:red"
            draw_output(ax, problem, points[example], predictions[example], color)
            ax.set_title(f"prediction #{example}", fontsize=7)
    fig.suptitle(f"{problem}: prediction | target")
    return fig


def pointer_steps_figure(
    points: Sequence[np.ndarray], step_weights: Sequence[np.ndarray], max_steps: int = 8
) -> plt.Figure:
    """Each decoding step's pointer distribution, one row of panels per instance.

    ``points``: the instances' points [n, 2]; ``step_weights``: for each, the softmax over the keys
    [EOS, point 1 … point n] at every step, [T, ≥ n + 1] (e.g. a pointer layer's recording from
    ``core.inspect``). A panel shows step t: points coloured and sized by their weight, the step's most
    likely key (the one greedy decoding picks) ringed in red, the points picked before joined in grey,
    the EOS weight in the title. Rows stop at the step that picks EOS, or after ``max_steps``.
    """
    chosen = [w.argmax(-1) for w in step_weights]
    steps = [
        min(max_steps, int(np.flatnonzero(c == 0)[0]) + 1 if (c == 0).any() else len(c))
        for c in chosen
    ]
    columns = max(steps)
    fig, axes = plt.subplots(
        len(points), columns, figsize=(1.7 * columns, 1.8 * len(points)), squeeze=False
    )
    for row, (xy, weights, picks) in enumerate(zip(points, step_weights, chosen, strict=True)):
        n = len(xy)
        for step, ax in enumerate(axes[row]):
            ax.set(xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), xticks=[], yticks=[], aspect="equal")
            if step >= steps[row]:
                ax.axis("off")
                continue
            on_points = weights[step, 1 : n + 1]
            before = picks[:step][picks[:step] > 0] - 1
            ax.plot(xy[before, 0], xy[before, 1], color="0.6", lw=0.8)
            ax.scatter(
                xy[:, 0],
                xy[:, 1],
                s=4 + 120 * on_points,
                c=on_points,
                cmap="viridis",
                vmin=0.0,
                vmax=1.0,
                edgecolors="0.3",
                linewidths=0.3,
                zorder=3,
            )
            pick = int(picks[step])
            if pick > 0:
                ax.scatter(
                    *xy[pick - 1], s=150, facecolors="none", edgecolors="red", lw=1.2, zorder=4
                )
            label = "EOS ✓" if pick == 0 else f"→ {pick}"
            ax.set_title(f"#{row} step {step + 1}: {label}\nEOS {weights[step, 0]:.2f}", fontsize=6)
    fig.suptitle("pointer distribution per decoding step (colour, size: weight; red: picked)")
    fig.tight_layout()
    return fig
