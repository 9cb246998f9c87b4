"""Attention heatmaps over the slide: each branch's weights painted on its tiles, over the thumbnail
(or over a blank canvas when the features came without one), and STKIM's before/after table."""

from __future__ import annotations

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from apps.wsi.bags import Bag


def attention_raster(bag: Bag, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """The tile grid of ``bag`` as an image ``[rows, cols]`` holding ``weights [N]`` (NaN where no
    tile lies) and the side of one grid cell in level-0 pixels."""
    steps = np.diff(np.unique(bag.coords[:, 0]))
    tile = bag.tile_size or (int(steps.min()) if steps.size else 1)
    cells = bag.coords // tile
    raster = np.full((int(cells[:, 1].max()) + 1, int(cells[:, 0].max()) + 1), np.nan)
    raster[cells[:, 1], cells[:, 0]] = weights
    return raster, float(tile)


def draw_heatmap(ax: Axes, bag: Bag, weights: np.ndarray, title: str) -> None:
    """``weights [N]`` of ``bag``'s tiles as a heatmap (scaled to the slide's maximum) over its
    thumbnail."""
    raster, tile = attention_raster(bag, weights / max(float(weights.max()), 1e-12))
    scale = bag.thumbnail_downsample if bag.thumbnail is not None else tile
    if bag.thumbnail is not None:
        ax.imshow(bag.thumbnail)
    extent = (0, raster.shape[1] * tile / scale, raster.shape[0] * tile / scale, 0)
    ax.imshow(raster, cmap="inferno", alpha=0.6 if bag.thumbnail is not None else 1.0,
              vmin=0, vmax=1, extent=extent, interpolation="nearest")  # fmt: skip
    if bag.thumbnail is not None:
        ax.set_xlim(0, bag.thumbnail.shape[1])
        ax.set_ylim(bag.thumbnail.shape[0], 0)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


def outline_tiles(ax: Axes, bag: Bag, chosen: np.ndarray, colour: str = "cyan") -> None:
    """Outline the tiles where ``chosen [N]`` (bool) holds, e.g. the planted tumour."""
    tile = bag.tile_size or 1
    scale = bag.thumbnail_downsample if bag.thumbnail is not None else tile
    for x, y in bag.coords[chosen]:
        ax.add_patch(plt.Rectangle((x / scale, y / scale), tile / scale, tile / scale,
                                   fill=False, edgecolor=colour, linewidth=0.6))  # fmt: skip


def branch_heatmaps(bags: list[Bag], weights: list[np.ndarray], titles: list[str]) -> Figure:
    """One row per bag: the thumbnail (planted tumour outlined when known), then each branch's
    attention ``weights[i] [N, K]`` and the branches' mean, which the slide classifier uses."""
    branches = weights[0].shape[1]
    columns = 2 + branches if branches > 1 else 2
    fig, axes = plt.subplots(len(bags), columns, figsize=(2.2 * columns, 2.0 * len(bags) + 0.4),
                             squeeze=False)  # fmt: skip
    for row, (bag, w, title) in enumerate(zip(bags, weights, titles, strict=True)):
        ax = axes[row, 0]
        if bag.thumbnail is not None:
            ax.imshow(bag.thumbnail)
        else:
            draw_heatmap(ax, bag, np.ones(len(bag)), "")
        if bag.instance_labels is not None and bag.instance_labels.any():
            outline_tiles(ax, bag, bag.instance_labels)
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
        panels = [(w[:, k], f"branch {k + 1}") for k in range(branches)] if branches > 1 else []
        panels.append((w.mean(1), "mean (slide head)" if branches > 1 else "attention"))
        for col, (values, name) in enumerate(panels, start=1):
            draw_heatmap(axes[row, col], bag, values, name)
    fig.tight_layout()
    return fig


def stkim_table_figure(rows: list[dict[str, float]]) -> Figure:
    """Per branch, attention entropy and top-K mass without and with STKIM's masking: bars."""
    branches = [f"b{int(r['branch'])}" for r in rows]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, stat, label in ((axes[0], "entropy", "normalised entropy"),
                            (axes[1], "top_k_mass", "top-K mass")):  # fmt: skip
        ax.bar(x - 0.2, [r[f"{stat}_before"] for r in rows], 0.4, label="as trained")
        ax.bar(x + 0.2, [r[f"{stat}_after"] for r in rows], 0.4, label="with STKIM mask")
        ax.set_xticks(x, branches)
        ax.set_ylabel(label)
    axes[1].legend(fontsize=8)
    fig.suptitle("Each branch's attention as trained and under STKIM's training mask", fontsize=9)
    fig.tight_layout()
    return fig
