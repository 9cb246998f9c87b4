"""DSVT's set attention in the field's terms, from a ``core.inspect`` recording: where a voxel's
set lies in bird's-eye view and how its weight spreads over it, and how concentrated each head is
against the size of the set it attends in."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from apps.pointcloud.data import PointCloudBatch
from apps.pointcloud.plots import PANEL_INCHES, draw_boxes, draw_points
from apps.pointcloud.sets import SetPartition, partition_sets
from apps.pointcloud.voxelize import voxelize
from core.inspect import Recording
from core.nn import MultiHeadAttention
from core.train.figures import write_png

LAYER = re.compile(r"backbone\.stages\.0\.(\d+)\.layers\.(\d)\.attn$")
QUERIES = 4  # query voxels drawn


def render_set_attention(model: torch.nn.Module, recording: Recording, out_dir: Path) -> list[Path]:
    """``set_attention.png``: for a few query voxels of the first recorded frame (the first voxels
    of the largest sets), their set's voxels coloured by the query's weight (mean over heads) over
    the frame's points, in the first and last recorded layers of the first stage; and
    ``entropy_by_set_size.png``: every head's mean attention entropy (nats) against the size of the
    set, with ln(size) (uniform attention) for reference."""
    if not recording.batches:
        return []
    layers = [
        (name, LAYER.search(name))
        for name in recording.layer_names(MultiHeadAttention)
        if LAYER.search(name) and recording.weights.get(name)
    ]
    if not layers:
        return []
    batch: PointCloudBatch = recording.batches[0]
    chosen = [layers[0], layers[-1]] if len(layers) > 1 else layers[:1]
    parts = [layer_partition(model, batch, int(m[1]), int(m[2])) for _, m in chosen]
    weights = [first_batch(recording, name) for name, _ in chosen]
    names = [name for name, _ in chosen]
    return [
        write_png(
            set_attention_figure(batch, parts, weights, names), out_dir / "set_attention.png"
        ),
        write_png(entropy_figure(weights[0], names[0]), out_dir / "entropy_by_set_size.png"),
    ]


def first_batch(recording: Recording, name: str) -> list[torch.Tensor]:
    """The kept weights ``[H, L, L]`` per set of the first recorded batch of layer ``name``."""
    kept = [k for k in recording.weights[name] if k.batch_index == 0]
    return kept[0].weights if kept else recording.weights[name][0].weights


def layer_partition(
    model: torch.nn.Module, batch: PointCloudBatch, block: int, layer: int
) -> tuple[SetPartition, torch.Tensor, torch.Tensor]:
    """The set partition block ``block``'s layer ``layer`` attended over (first stage: y-axis sets
    first, shifted windows on odd blocks), the voxels' centres ``[V, 2]`` in metres and their
    frames ``[V]``."""
    grid, config = model.grid, model.backbone.config
    voxels = voxelize(batch.points, batch.batch_index, grid, len(batch))
    wx, wy, wz = config.window_shape
    window = (wx, wy, min(wz, grid.shape[0]))
    part = partition_sets(
        voxels.coords, grid.shape, window, config.set_size, block % 2 == 1, ("y", "x")[layer]
    )
    size = grid.size(voxels.coords.device)
    centres = grid.lower(voxels.coords.device)[:2] + (voxels.coords[:, [3, 2]] + 0.5) * size[:2]
    return part, centres, voxels.coords[:, 0]


def set_attention_figure(
    batch: PointCloudBatch,
    parts: list[tuple[SetPartition, torch.Tensor, torch.Tensor]],
    weights: list[list[torch.Tensor]],
    names: list[str],
) -> Figure:
    """One row per layer, one panel per query: the frame's points in grey, the query's set
    coloured by its weight, the query voxel as a red star, the true boxes outlined."""
    figure = Figure(
        figsize=(PANEL_INCHES * QUERIES * 0.8, PANEL_INCHES * 0.8 * len(parts)),
        layout="constrained",
    )
    axes = figure.subplots(len(parts), QUERIES, squeeze=False)
    points = batch.points[batch.batch_index == 0].cpu()
    for row, ((part, centres, frame_of), sets, name) in enumerate(
        zip(parts, weights, names, strict=True)
    ):
        sizes = part.cu_seqlens.diff().cpu()
        in_frame = torch.nonzero(frame_of[part.slots[:, 0]].cpu() == 0).squeeze(1)
        largest = in_frame[sizes[in_frame].argsort(descending=True)[:QUERIES]]
        for ax, index in zip(axes[row], largest.tolist(), strict=False):
            start, stop = int(part.cu_seqlens[index]), int(part.cu_seqlens[index + 1])
            members = part.tokens[start:stop].cpu()
            weight = sets[index].mean(0)[0].numpy()  # the set's first token as the query
            xy = centres[members].cpu().numpy()
            draw_points(ax, points)
            scatter = ax.scatter(-xy[:, 1], xy[:, 0], s=14, c=weight, cmap="magma_r")
            ax.scatter([-xy[0, 1]], [xy[0, 0]], marker="*", s=90, c="red")
            draw_boxes(ax, batch.boxes[0].cpu(), batch.labels[0].cpu(), dashed=False)
            pad = 6.0
            ax.set_xlim(-xy[:, 1].max() - pad, -xy[:, 1].min() + pad)
            ax.set_ylim(xy[:, 0].min() - pad, xy[:, 0].max() + pad)
            layer = name.removeprefix("model.backbone.")
            ax.set_title(f"{layer}\nset {index}: {len(members)} voxels", fontsize=8)
            figure.colorbar(scatter, ax=ax, shrink=0.6, label="weight")
    return figure


def entropy_figure(sets: list[torch.Tensor], name: str) -> Figure:
    """Each head's mean row entropy per set against the set's size, with ln(size)."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.subplots()
    sizes = np.array([w.shape[-1] for w in sets])
    entropy = np.stack(
        [(-(w * w.clamp_min(1e-12).log()).sum(-1)).mean(-1).numpy() for w in sets]
    )  # [sets, H]
    for head in range(entropy.shape[1]):
        ax.scatter(sizes, entropy[:, head], s=6, alpha=0.6, label=f"head {head}")
    grid = np.arange(1, sizes.max() + 1)
    ax.plot(grid, np.log(grid), color="black", lw=1, label="ln(size): uniform")
    ax.set_xlabel("voxels in the set")
    ax.set_ylabel("mean attention entropy (nats)")
    ax.set_title(name.removeprefix("model.backbone."), fontsize=9)
    ax.legend(fontsize=6, ncols=2)
    return figure
