"""Figures of the scanpath app: scanpaths drawn over the display's objects, the decoder's
cross-attention at each generated fixation, and the encoder heads' attention against grid distance."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from apps.scanpath.scenes import Scanpath, Scene

PANELS = 4  # displays per figure
STEPS = 6  # generated fixations drawn per display


def draw_layout(ax: Axes, scene: Scene, colours: np.ndarray | None = None) -> None:
    """The display's object boxes (filled by ``colours [N]`` in [0, 1] when given), the target's box
    in red, over the display's picture when it has one; image coordinates (y down)."""
    if scene.image is not None:
        with Image.open(scene.image) as picture:
            ax.imshow(picture.convert("RGB"), extent=(0, scene.width, scene.height, 0))
    for i, (x0, y0, x1, y1) in enumerate(scene.boxes):
        face = "none" if colours is None else colormaps["viridis"](float(colours[i]))
        edge = "red" if i == scene.target else "0.6"
        ax.add_patch(
            Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=face, edgecolor=edge, linewidth=1.2)
        )
    ax.set_xlim(0, scene.width)
    ax.set_ylim(scene.height, 0)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_path(
    ax: Axes, scene: Scene, objects: np.ndarray, colour: str, label: str, shift: float
) -> None:
    """A scanpath as numbered points on its objects' box centres (``shift`` offsets it so two paths
    on the same objects stay readable)."""
    if len(objects) == 0:
        return
    points = scene.centres[objects] + shift
    ax.plot(
        points[:, 0], points[:, 1], "-o", color=colour, markersize=4, linewidth=1.3, label=label
    )
    for step, (x, y) in enumerate(points[:9], start=1):
        ax.annotate(
            str(step), (x, y), fontsize=6, color=colour, xytext=(2, 2), textcoords="offset points"
        )


def scanpaths_figure(examples: list[tuple[Scene, np.ndarray, list[Scanpath]]]) -> Figure:
    """Predicted (orange) against one human scanpath (blue) over the objects, per display."""
    examples = examples[:PANELS]
    figure = Figure(figsize=(4.2 * len(examples), 3.2), layout="constrained")
    for ax, (scene, predicted, humans) in zip(
        figure.subplots(1, len(examples), squeeze=False)[0], examples, strict=True
    ):
        draw_layout(ax, scene)
        if humans:
            draw_path(ax, scene, humans[0].objects, "tab:blue", f"human ({len(humans[0])})", -6)
        draw_path(ax, scene, predicted, "tab:orange", f"OAT ({len(predicted)})", 6)
        ax.set_title(scene.name, fontsize=8)
        ax.legend(fontsize=6, loc="lower right")
    return figure


def cross_attention_figure(
    scenes: list[Scene], steps: list[np.ndarray], paths: list[np.ndarray]
) -> Figure:
    """Rows: displays; columns: generated fixations. Each object's box is coloured by the last decoder
    layer's cross-attention (mean over heads, ``steps[i]`` [T, N]) when choosing that fixation; a
    white cross marks the object chosen (``paths[i]``)."""
    columns = min(STEPS, max(len(s) for s in steps))
    figure = Figure(figsize=(2.6 * columns, 1.9 * len(scenes)), layout="constrained")
    axes = figure.subplots(len(scenes), columns, squeeze=False)
    for row, (scene, weights, path) in enumerate(zip(scenes, steps, paths, strict=True)):
        for col in range(columns):
            ax = axes[row, col]
            if col >= len(weights):
                ax.axis("off")
                continue
            w = weights[col, : len(scene)]
            draw_layout(ax, scene, w / max(float(w.max()), 1e-12))
            x, y = scene.centres[path[col]]
            ax.plot(x, y, "x", color="white", markersize=7, markeredgewidth=2)
            ax.set_title(f"{scene.name} · step {col + 1}", fontsize=7)
    return figure


def distance_profile(
    weights: list[torch.Tensor], scenes: list[Scene], max_distance: int
) -> np.ndarray:
    """``[H, max_distance + 1]``: the mean attention one object pays one other object at each
    (rounded) grid distance, over the displays' object queries (target token left out)."""
    heads = weights[0].shape[0]
    total = np.zeros((heads, max_distance + 1))
    count = np.zeros(max_distance + 1)
    for w, scene in zip(weights, scenes, strict=True):
        n = len(scene)
        objects = w[:, 1 : n + 1, 1 : n + 1].numpy()  # [H, n, n]
        objects = objects / np.maximum(objects.sum(-1, keepdims=True), 1e-12)
        cells = scene.cells.astype(float)
        distance = np.rint(np.linalg.norm(cells[:, None] - cells[None], axis=-1)).astype(int)
        distance = np.minimum(distance, max_distance)
        for d in range(max_distance + 1):
            mask = distance == d
            total[:, d] += objects[:, mask].sum(-1)
            count[d] += mask.sum()
    return total / np.maximum(count, 1)


def attention_distance_figure(
    scenes: list[Scene], weights: dict[str, list[torch.Tensor]], sigma: float
) -> Figure:
    """Per encoder layer, each head's attention per object against grid distance, beside the
    positional code's Gaussian prior ``exp(-d² / 2σ²)`` scaled to the heads' mean at distance 0."""
    max_distance = int(max(scene.cells.max() for scene in scenes)) + 1
    figure = Figure(figsize=(3.4 * len(weights), 3.0), layout="constrained")
    axes = figure.subplots(1, len(weights), squeeze=False)[0]
    d = np.arange(max_distance + 1)
    for ax, (name, layer) in zip(axes, weights.items(), strict=True):
        used = scenes[: len(layer)]
        profile = distance_profile(layer, used, max_distance)
        for head, values in enumerate(profile):
            ax.plot(d, values, "-o", markersize=3, label=f"head {head}")
        prior = np.exp(-(d**2) / (2 * sigma**2))
        ax.plot(d, prior * profile[:, 0].mean(), "k--", label=f"Gaussian prior σ={sigma:g}")
        ax.set_title(name.removeprefix("model.encoder.layers."), fontsize=8)
        ax.set_xlabel("grid distance (cells)")
        ax.set_ylabel("attention per object")
        ax.legend(fontsize=6)
    return figure
