"""The figure of all heads: a layers × heads grid coloured by normalised entropy and by sink score."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from core.inspect.stats import SINK_LINE, HeadStatistics, sink_fraction


def heads_figure(statistics: Mapping[str, HeadStatistics]) -> plt.Figure:
    """Two ``[layers, heads]`` heat maps side by side: normalised entropy (0 = one key, 1 = uniform)
    and sink score (mean weight of each head's strongest key), values written in the cells when the
    grid is small. Layers with fewer heads leave blank cells."""
    names = list(statistics)
    n_heads = max(s.n_heads for s in statistics.values())
    panels = (
        ("normalised entropy", "normalized_entropy", "viridis"),
        ("sink score", "sink_score", "magma"),
    )
    width = 2.0 + 0.45 * n_heads
    height = 1.8 + 0.32 * len(names)
    fig, axes = plt.subplots(1, 2, figsize=(2 * width + 2.0, height), squeeze=False)
    for ax, (title, field, colormap) in zip(axes[0], panels, strict=True):
        grid = np.full((len(names), n_heads), np.nan)
        for row, stats in enumerate(statistics.values()):
            grid[row, : stats.n_heads] = getattr(stats, field).numpy()
        image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap=colormap, aspect="auto")
        if grid.size <= 400:
            for (row, head), value in np.ndenumerate(grid):
                if not np.isnan(value):
                    color = "white" if value < 0.5 else "black"
                    ax.text(
                        head, row, f"{value:.2f}", ha="center", va="center", fontsize=6, color=color
                    )
        ax.set_xticks(range(n_heads))
        ax.set_yticks(range(len(names)), [name or "(model)" for name in names], fontsize=7)
        ax.set_xlabel("head")
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    share = sink_fraction(statistics)
    fig.suptitle(f"attention heads: {share:.0%} with sink score ≥ {SINK_LINE}", fontsize=10)
    fig.tight_layout()
    return fig
