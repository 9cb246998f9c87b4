"""The recsys figures: where the held-out items ranked, what the short- and long-query branches
attend to for one user, and the transitions the item embeddings learned against TED's teacher."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from core.inspect import Recording

SHOWN_POSITIONS = 20  # the latest history items drawn in the attention figure
Ranked = list[tuple[str, float]]  # (item token, probability), best first


def ranks_figure(ranks: np.ndarray, ks: Sequence[int], num_items: int) -> plt.Figure:
    """Histogram of the held-out items' 0-based ranks (log scale), with HR@k at each cut-off."""
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    bins = np.unique(np.geomspace(1, num_items + 1, 40).astype(int))
    ax.hist(ranks + 1, bins=bins, color="tab:blue", alpha=0.8)
    ax.set(xscale="log", xlabel="rank of the held-out item (1 = top)", ylabel="cases")
    for k in ks:
        ax.axvline(k + 0.5, color="tab:red", lw=0.8, ls="--")
        ax.text(k + 0.5, ax.get_ylim()[1] * 0.95, f"HR@{k} {np.mean(ranks < k):.2f}",
                rotation=90, va="top", ha="right", fontsize=8)  # fmt: skip
    ax.set_title(f"Where the held-out items ranked ({len(ranks)} cases, {num_items} items)")
    fig.tight_layout()
    return fig


def branch_weights(recording: Recording) -> dict[str, torch.Tensor]:
    """The first kept instance of the last block of each branch, ``[H, T, T]`` by branch name."""
    found: dict[str, torch.Tensor] = {}
    for name, batches in recording.weights.items():
        branch = name.split(".")[0]
        if branch in ("short", "long") and batches and batches[0].weights:
            found[branch] = batches[0].weights[0]  # later blocks overwrite earlier ones
    return found


def attention_figure(
    recording: Recording, items: np.ndarray, item_tokens: Sequence[str], title: str
) -> plt.Figure | None:
    """For one user (``items [T]``, left-padded ids): per branch, the head-mean attention of the
    latest ``SHOWN_POSITIONS`` positions as a query × key map, and the last position's attention
    over the history per head, whose share on the oldest shown item and on the latest item (the
    two places a sink forms) is in the legend. None when nothing was recorded."""
    weights = branch_weights(recording)
    if not weights:
        return None
    real = np.flatnonzero(items > 0)[-SHOWN_POSITIONS:]
    labels = [item_tokens[i - 1] for i in items[real]]
    fig, axes = plt.subplots(2, len(weights), figsize=(5.2 * len(weights), 8.2), squeeze=False)
    for column, (branch, w) in enumerate(weights.items()):
        shown = w[:, real][:, :, real].numpy()  # [H, n, n]
        ax = axes[0, column]
        image = ax.imshow(shown.mean(0), cmap="viridis", vmin=0)
        ax.set(title=f"{branch}-query branch: head mean", xlabel="key (history item)",
               ylabel="query position")  # fmt: skip
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
        plt.colorbar(image, ax=ax, fraction=0.046)
        ax = axes[1, column]
        last = w[:, real[-1], real].numpy()  # [H, n]
        for head, row in enumerate(last):
            ax.plot(row, marker="o", ms=3,
                    label=f"head {head}: oldest {row[0]:.2f}, latest {row[-1]:.2f}")  # fmt: skip
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set(title=f"{branch}: the latest position's attention", ylabel="weight")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def transitions_figure(rows: Sequence[tuple[str, Ranked, Ranked, float]]) -> plt.Figure:
    """Per item ``(token, teacher's next items, student's next items, student's probability of
    the item itself)``: TED's teacher (the training transitions) beside what the item embeddings
    predict, as ranked bars; the student's own item is left out of its bars, named in the title."""
    fig, axes = plt.subplots(len(rows), 2, figsize=(8.0, 1.7 * len(rows)), squeeze=False)
    for (token, teacher, student, itself), pair in zip(rows, axes, strict=True):
        for ax, ranked, who in (
            (pair[0], teacher, "teacher"),
            (pair[1], student, f"student (itself: {itself:.2f}, not shown)"),
        ):
            names = [name for name, _ in ranked][::-1]
            ax.barh(names, [p for _, p in ranked][::-1],
                    color="tab:gray" if who == "teacher" else "tab:green")  # fmt: skip
            ax.set_title(f"after item {token}: {who}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_xlim(0, 1)
    axes[-1, 0].set_xlabel("probability of the next item")
    axes[-1, 1].set_xlabel("probability of the next item")
    fig.suptitle("Next-item transitions: TED's teacher (training counts) vs the learned embeddings")
    fig.tight_layout()
    return fig
