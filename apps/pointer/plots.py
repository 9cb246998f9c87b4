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
