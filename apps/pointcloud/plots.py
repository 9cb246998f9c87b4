"""Bird's-eye-view figures: a frame's points with its true and detected boxes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from apps.pointcloud.boxes import box_corners_bev
from apps.pointcloud.frames import CLASSES

CLASS_COLOURS = ("tab:red", "tab:blue", "tab:green")  # Car, Pedestrian, Cyclist
PANEL_INCHES = 5.0


@dataclass
class Example:
    """One frame as a figure shows it: points ``[N, 4]``, true ``boxes`` ``[M, 7]`` with ``labels``,
    detected ``found`` ``[k, 7]`` with ``scores`` and ``found_labels``."""

    frame_id: str
    points: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    found: torch.Tensor
    scores: torch.Tensor
    found_labels: torch.Tensor


def draw_points(ax: Axes, points: torch.Tensor, muted: bool = False) -> None:
    """Points seen from above (x up the page, y to the left, as a driver sees the road), coloured
    by height, or light grey under something ``muted`` leaves room for."""
    xy = points[:, :2].numpy()
    colour = "0.8" if muted else points[:, 2].numpy()
    ax.scatter(
        -xy[:, 1],
        xy[:, 0],
        s=0.5,
        c=colour,
        cmap=None if muted else "viridis",
        alpha=0.6,
        linewidths=0,
    )
    ax.set_aspect("equal")
    ax.set_xlabel("−y (m, right)")
    ax.set_ylabel("x (m, forward)")


def draw_boxes(
    ax: Axes,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    dashed: bool,
    scores: torch.Tensor | None = None,
) -> None:
    """Box outlines in bird's-eye view coloured by class, with a tick on the heading side; true
    boxes solid, detections dashed with their score."""
    for i, corners in enumerate(box_corners_bev(boxes).numpy()):
        colour = CLASS_COLOURS[int(labels[i])]
        ring = np.vstack([corners, corners[:1]])
        ax.plot(-ring[:, 1], ring[:, 0], color=colour, lw=1.0, ls="--" if dashed else "-")
        x, y, length, yaw = (float(boxes[i, j]) for j in (0, 1, 3, 6))
        tip = (x + length / 2 * np.cos(yaw), y + length / 2 * np.sin(yaw))
        ax.plot([-y, -tip[1]], [x, tip[0]], color=colour, lw=0.8)
        if scores is not None:
            ax.annotate(f"{float(scores[i]):.2f}", (-corners[0, 1], corners[0, 0]), fontsize=6)


def bev_figure(examples: list[Example], columns: int = 2) -> Figure:
    """Each frame in bird's-eye view: points by height, true boxes solid, detections dashed with
    their scores, coloured by class."""
    rows = -(-len(examples) // columns)
    width = min(columns, len(examples))
    figure = Figure(figsize=(PANEL_INCHES * width, PANEL_INCHES * rows), layout="constrained")
    axes = figure.subplots(rows, width, squeeze=False).ravel()
    for ax, example in zip(axes, examples, strict=False):
        draw_points(ax, example.points)
        draw_boxes(ax, example.boxes, example.labels, dashed=False)
        draw_boxes(ax, example.found, example.found_labels, dashed=True, scores=example.scores)
        ax.set_title(f"{example.frame_id}: {len(example.boxes)} true, {len(example.found)} found")
    for ax in axes[len(examples) :]:
        ax.set_axis_off()
    pairs = zip(CLASS_COLOURS, CLASSES, strict=True)
    handles = [axes[0].plot([], [], color=c, label=n)[0] for c, n in pairs]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(CLASSES))
    return figure
