"""The backbone's attention in the field's terms: where a voxel's attention group (a DSVT set, a
ScatterFormer window) lies in bird's-eye view and how its weight spreads over it, and how
concentrated each head is against the size of the group it attends in.

DSVT's weights come from the ``core.inspect`` recording. ScatterFormer's linear attention has no
softmax weights; its implied weights ``φ(q)·φ(k)ᵀ`` normalised per row (what its output averages
over) are recomputed for the recorded batch, so the two backbones can be compared head by head.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from apps.pointcloud.data import PointCloudBatch
from apps.pointcloud.frames import VoxelGrid
from apps.pointcloud.model import Detector
from apps.pointcloud.plots import PANEL_INCHES, draw_boxes, draw_points
from apps.pointcloud.scatterformer import ScatterFormer, implied_weights
from apps.pointcloud.sets import partition_sets
from apps.pointcloud.voxelize import voxelize
from core.inspect import Recording
from core.nn import MultiHeadAttention
from core.train.figures import write_png

DSVT_LAYER = re.compile(r"backbone\.stages\.0\.(\d+)\.layers\.(\d)\.attn$")
QUERIES = 4  # query voxels drawn per layer


@dataclass
class Groups:
    """What one attention layer attended within, for one batch: ``tokens`` [T] the voxel of each
    packed token, group after group as ``cu_seqlens`` [N+1] cuts them; per voxel its centre
    ``centres`` [V, 2] (x, y metres) and its frame ``frame`` [V]; ``weights``, per group, [H, L, L]."""

    name: str
    tokens: torch.Tensor
    cu_seqlens: torch.Tensor
    centres: torch.Tensor
    frame: torch.Tensor
    weights: list[torch.Tensor]


def render_set_attention(model: Detector, recording: Recording, out_dir: Path) -> list[Path]:
    """``set_attention.png``: for query voxels of the first frame of the first recorded batch (the
    first voxels of the largest groups), their group's voxels coloured by the query's weight (mean
    over heads) over the frame's points, in the first and last attention layers; and
    ``entropy_by_set_size.png``: every head's mean attention entropy (nats) per group against the
    group's size, with ln(size) (uniform attention) for reference."""
    if not recording.batches:
        return []
    batch: PointCloudBatch = recording.batches[0]
    if isinstance(model.backbone, ScatterFormer):
        layers = scatterformer_groups(model, batch)
    else:
        layers = dsvt_groups(model, recording, batch)
    if not layers:
        return []
    return [
        write_png(set_attention_figure(batch, layers), out_dir / "set_attention.png"),
        write_png(entropy_figure(layers[0]), out_dir / "entropy_by_set_size.png"),
    ]


def voxel_centres(grid: VoxelGrid, coords: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Centres ``[V, 2]`` (x, y metres) of voxels at ``coords`` [V, 4] on ``grid`` coarsened by
    ``stride`` in x and y."""
    size = grid.size(coords.device)[:2] * stride
    return grid.lower(coords.device)[:2] + (coords[:, [3, 2]] + 0.5) * size


def dsvt_groups(model: Detector, recording: Recording, batch: PointCloudBatch) -> list[Groups]:
    """The first and last recorded DSVT layers of the first stage: their sets (recomputed for the
    batch: y-axis sets first in a block, shifted windows on odd blocks) and recorded weights."""
    names = [
        name
        for name in recording.layer_names(MultiHeadAttention)
        if DSVT_LAYER.search(name) and recording.weights.get(name)
    ]
    grid, config = model.grid, model.backbone.config
    voxels = voxelize(batch.points, batch.batch_index, grid, len(batch))
    window = config.window_on(grid.shape)
    centres, frame = voxel_centres(grid, voxels.coords), voxels.coords[:, 0]
    out = []
    for name in dict.fromkeys([names[0], names[-1]] if names else []):
        block, layer = (int(i) for i in DSVT_LAYER.search(name).groups())
        part = partition_sets(
            voxels.coords, grid.shape, window, config.set_size, block % 2 == 1, ("y", "x")[layer]
        )
        kept = [k for k in recording.weights[name] if k.batch_index == 0] or recording.weights[name]
        short = name.removeprefix("model.backbone.")
        out.append(Groups(short, part.tokens, part.cu_seqlens, centres, frame, kept[0].weights))
    return out


def scatterformer_groups(model: Detector, batch: PointCloudBatch) -> list[Groups]:
    """The first and last ScatterFormer layers: their windows and implied weights, recomputed."""
    backbone: ScatterFormer = model.backbone
    grid = model.grid
    voxels = voxelize(batch.points, batch.batch_index, grid, len(batch))
    with torch.no_grad():
        features = model.pfn(voxels)
    layers = sum(backbone.config.stage_layers)
    out = []
    for layer in dict.fromkeys([0, layers - 1]):
        found = backbone.layer_queries_keys(features, voxels.coords, grid.shape, layer)
        stride = round(grid.shape[2] / found.grid_shape[2])
        out.append(
            Groups(
                f"layer {layer} (implied weights)",
                torch.arange(len(found.coords)),
                found.cu_seqlens,
                voxel_centres(grid, found.coords, stride),
                found.coords[:, 0],
                [w.cpu() for w in implied_weights(found.q, found.k, found.cu_seqlens)],
            )
        )
    return out


def set_attention_figure(batch: PointCloudBatch, layers: list[Groups]) -> Figure:
    """One row per layer, one panel per query: the frame's points in grey, the query's group
    coloured by its weight, the query voxel as a red star, the true boxes outlined."""
    figure = Figure(
        figsize=(PANEL_INCHES * QUERIES * 0.8, PANEL_INCHES * 0.8 * len(layers)),
        layout="constrained",
    )
    axes = figure.subplots(len(layers), QUERIES, squeeze=False)
    points = batch.points[batch.batch_index == 0].cpu()
    for row, groups in enumerate(layers):
        starts = groups.cu_seqlens[:-1].long().cpu()
        sizes = groups.cu_seqlens.diff().cpu()
        first_tokens = groups.tokens.cpu()[starts.clamp(max=max(len(groups.tokens) - 1, 0))]
        in_frame = torch.nonzero((groups.frame.cpu()[first_tokens] == 0) & (sizes > 0)).squeeze(1)
        largest = in_frame[sizes[in_frame].argsort(descending=True)[:QUERIES]]
        for ax, index in zip(axes[row], largest.tolist(), strict=False):
            start, stop = int(starts[index]), int(starts[index] + sizes[index])
            xy = groups.centres.cpu()[groups.tokens.cpu()[start:stop]].numpy()
            weight = groups.weights[index].mean(0)[0].numpy()  # the group's first token queries
            draw_points(ax, points, muted=True)
            scatter = ax.scatter(-xy[:, 1], xy[:, 0], s=14, c=weight, cmap="magma_r")
            ax.scatter([-xy[0, 1]], [xy[0, 0]], marker="*", s=90, c="red")
            draw_boxes(ax, batch.boxes[0].cpu(), batch.labels[0].cpu(), dashed=False)
            pad = 6.0
            ax.set_xlim(-xy[:, 1].max() - pad, -xy[:, 1].min() + pad)
            ax.set_ylim(xy[:, 0].min() - pad, xy[:, 0].max() + pad)
            ax.set_title(f"{groups.name}\ngroup {index}: {len(xy)} voxels", fontsize=8)
            figure.colorbar(scatter, ax=ax, shrink=0.6, label="weight")
    return figure


def entropy_figure(groups: Groups) -> Figure:
    """Each head's mean row entropy per group against the group's size, with ln(size)."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.subplots()
    sizes = np.array([w.shape[-1] for w in groups.weights])
    entropy = np.stack(
        [(-(w * w.clamp_min(1e-12).log()).sum(-1)).mean(-1).numpy() for w in groups.weights]
    )  # [groups, H]
    for head in range(entropy.shape[1]):
        ax.scatter(sizes, entropy[:, head], s=6, alpha=0.6, label=f"head {head}")
    grid = np.arange(1, sizes.max() + 1)
    ax.plot(grid, np.log(grid), color="black", lw=1, label="ln(size): uniform")
    ax.set_xlabel("voxels in the group (set or window)")
    ax.set_ylabel("mean attention entropy (nats)")
    ax.set_title(groups.name, fontsize=9)
    ax.legend(fontsize=6, ncols=2)
    return figure
