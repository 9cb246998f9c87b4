"""Figures: forecasts against the truth over a day, and STTN's attention in the field's terms — the
spatial attention of one time step drawn on the sensor graph, the temporal attention as a T × T map,
and how spatial heads differ from temporal heads."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import torch

from apps.traffic.graph import SensorGraph
from core.inspect import Recording

STATISTICS = ("normalized_entropy", "top1_mass", "sink_score")


def forecast_figure(
    examples: Sequence[tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]],
    sensors: Sequence[int],
    graph: SensorGraph,
    interval_minutes: int,
    report_steps: Sequence[int],
) -> plt.Figure:
    """One panel per sensor: the observed reading and the forecasts made ``report_steps`` ahead, each
    drawn at the time it forecasts, over the kept windows (consecutive windows: a day at 288).

    ``examples``: ``(first target time, x, y [T_out, S], forecast [T_out, S], observed [T_out, S])``.
    """
    times = [time for time, *_ in examples]
    use_time = all(t is not None for t in times)
    step = np.timedelta64(interval_minutes, "m")
    y = torch.stack([e[2] for e in examples]).numpy()
    forecast = torch.stack([e[3] for e in examples]).numpy()
    observed = torch.stack([e[4] for e in examples]).numpy()
    fig, axes = plt.subplots(len(sensors), 1, figsize=(10, 2.0 * len(sensors)), squeeze=False)
    for column, (ax, sensor) in enumerate(zip(axes[:, 0], sensors, strict=True)):

        def at(k: int) -> np.ndarray:  # the x position of forecasts k steps ahead (1-based)
            return np.array(times) + (k - 1) * step if use_time else np.arange(len(y)) + k - 1

        truth = np.where(observed[:, 0, column], y[:, 0, column], np.nan)
        ax.plot(at(1), truth, color="black", lw=1.2, label="observed")
        for k, color in zip(report_steps, ("tab:green", "tab:orange", "tab:red"), strict=False):
            ax.plot(
                at(k), forecast[:, k - 1, column], color=color, lw=0.9,
                label=f"{k * interval_minutes} min ahead",
            )  # fmt: skip
        ax.set_ylabel(f"sensor {graph.sensor_ids[sensor]}", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncols=len(report_steps) + 1, loc="lower left")
    axes[-1, 0].set_xlabel("time" if use_time else "window")
    fig.autofmt_xdate()
    fig.suptitle("Forecasts against the observed readings (missing readings left blank)")
    return fig


@cache
def _spring_layout(edges: tuple[tuple[int, int], ...], nodes: int) -> np.ndarray:
    network = nx.Graph()
    network.add_nodes_from(range(nodes))
    network.add_edges_from(edges)
    positions = nx.spring_layout(network, seed=0)
    return np.array([positions[i] for i in range(nodes)])


def sensor_positions(graph: SensorGraph) -> tuple[np.ndarray, str]:
    """``[N, 2]`` drawing positions: (longitude, latitude) when the data has coordinates, else a
    force-directed layout of the road graph; and what they are."""
    if graph.coordinates is not None:
        latitude_longitude = np.asarray(graph.coordinates)
        return latitude_longitude[:, ::-1], "sensor locations"
    edges = tuple(zip(graph.sources, graph.targets, strict=True))
    return _spring_layout(edges, graph.num_nodes), "layout of the road graph (no coordinates)"


def draw_spatial(ax: plt.Axes, weights: np.ndarray, graph: SensorGraph) -> None:
    """``weights [N, N]`` (query → key) on the map: roads in grey, each sensor coloured by the
    attention it receives (mean over queries, ×N: 1 = its fair share), and an arrow from each sensor
    to the sensor it listens to most (other than itself), darker for a larger weight."""
    xy, _ = sensor_positions(graph)
    for s, t in zip(graph.sources, graph.targets, strict=True):
        ax.plot(*xy[[s, t]].T, color="0.85", lw=0.6, zorder=1)
    n = len(weights)
    others = weights.copy()
    np.fill_diagonal(others, -1)
    top = others.argmax(1)
    strength = weights[np.arange(n), top]
    for query, key in enumerate(top):
        ax.annotate(
            "", xy=xy[key], xytext=xy[query],
            arrowprops={"arrowstyle": "->", "lw": 0.6, "color": "tab:blue",
                        "alpha": float(np.clip(strength[query] * 3, 0.1, 1.0))},
        )  # fmt: skip
    received = weights.mean(0) * n
    dots = ax.scatter(*xy.T, c=received, cmap="magma_r", s=18, zorder=3, edgecolors="0.3", lw=0.3)
    plt.colorbar(dots, ax=ax, fraction=0.04, label="attention received (×fair share)")
    ax.set(xticks=[], yticks=[], aspect="equal")


def spatial_figure(weights: np.ndarray, graph: SensorGraph, title: str) -> plt.Figure:
    """Per head (rows): the map of :func:`draw_spatial` and the ``[N, N]`` matrix."""
    heads = len(weights)
    _, where = sensor_positions(graph)
    fig, axes = plt.subplots(
        heads, 2, figsize=(11, 4.6 * heads), squeeze=False, layout="constrained"
    )
    for head, (map_ax, matrix_ax) in enumerate(axes):
        draw_spatial(map_ax, weights[head], graph)
        map_ax.set_title(f"head {head}: strongest key of each sensor ({where})", fontsize=8)
        image = matrix_ax.imshow(weights[head], cmap="viridis", aspect="auto")
        matrix_ax.set(xlabel="key sensor", ylabel="query sensor")
        matrix_ax.set_title(f"head {head}: weights (row = query)", fontsize=8)
        plt.colorbar(image, ax=matrix_ax, fraction=0.04)
    fig.suptitle(title)
    return fig


def temporal_figure(weights: np.ndarray, title: str) -> plt.Figure:
    """Per head, the ``[T, T]`` map (query step × key step, oldest first)."""
    heads, steps, _ = weights.shape
    fig, axes = plt.subplots(1, heads, figsize=(3.4 * heads + 0.6, 3.2), squeeze=False)
    for head, ax in enumerate(axes[0]):
        image = ax.imshow(weights[head], cmap="viridis", vmin=0, origin="upper")
        ax.set(xlabel="key step", ylabel="query step", title=f"head {head}")
        ax.set(xticks=range(0, steps, 3), yticks=range(0, steps, 3))
        plt.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def roles_figure(recording: Recording) -> plt.Figure:
    """Spatial against temporal heads: per statistic, one dot per head of each layer kind."""
    statistics = recording.statistics()
    fig, axes = plt.subplots(1, len(STATISTICS), figsize=(3.2 * len(STATISTICS), 3.0))
    for ax, name in zip(axes, STATISTICS, strict=True):
        for column, kind in enumerate(("spatial", "temporal")):
            values = [
                v
                for layer, stats in statistics.items()
                if f".{kind}." in layer
                for v in getattr(stats, name).tolist()
            ]
            jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
            ax.scatter(column + np.asarray(jitter), values, s=22, label=kind)
        ax.set(xticks=[0, 1], xticklabels=["spatial", "temporal"], title=name.replace("_", " "))
        ax.set_xlim(-0.5, 1.5)
        ax.grid(alpha=0.3)
    fig.suptitle("Attention statistics of spatial and temporal heads (one dot per head)")
    fig.tight_layout()
    return fig


def attention_figures(
    recording: Recording, graph: SensorGraph, history: int, statistics: bool = True
) -> dict[str, plt.Figure]:
    """The figures of the first recorded window, for the first ST block: its spatial attention at
    the last of its ``history`` steps, its temporal attention averaged over sensors, and
    (``statistics``) the head statistics of every recorded layer."""
    figures = {}
    spatial, temporal = _first_layer(recording, "spatial"), _first_layer(recording, "temporal")
    if spatial is not None:  # one instance per (window, step), windows outer
        name, instances = spatial
        figures["spatial_attention"] = spatial_figure(
            instances[history - 1].numpy(),
            graph,
            f"Spatial attention at the last history step ({name})",
        )
    if temporal is not None:  # one instance per (window, sensor), windows outer
        name, instances = temporal
        weights = torch.stack(instances[: graph.num_nodes]).mean(0).numpy()
        figures["temporal_attention"] = temporal_figure(
            weights, f"Temporal attention, mean over sensors ({name})"
        )
    if statistics and recording.statistics():
        figures["head_roles"] = roles_figure(recording)
    return figures


def _first_layer(recording: Recording, kind: str) -> tuple[str, list[torch.Tensor]] | None:
    """The kept instances of the first batch of the first layer of ``kind`` (spatial/temporal)."""
    for name, batches in recording.weights.items():
        if f".{kind}." in name and batches:
            return name, batches[0].weights
    return None
