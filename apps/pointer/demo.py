"""How ``nox -s demo`` presents the pointer app: the task, the paper's numbers and a baseline computed
on the same test set (read by :mod:`core.train.demo`)."""

from __future__ import annotations

import numpy as np

from apps.pointer.metrics import PointerMetrics
from core.train.cli import ManyheadsCLI
from core.train.report import Baseline, DemoCard, MetricRow


def angle_sort(points: np.ndarray) -> np.ndarray:
    """Every point, counter-clockwise by its angle around the centroid, closed, 1-based: the sorting
    step of Graham's scan without its pruning, so it equals the hull only when every point is on it."""
    centred = points - points.mean(axis=0)
    order = np.argsort(np.arctan2(centred[:, 1], centred[:, 0])) + 1
    return np.append(order, order[0])


def angle_sort_metrics(cli: ManyheadsCLI) -> dict[str, float]:
    """:func:`angle_sort` scored by the app's own metrics on the test set the model was tested on."""
    if cli.model.problem != "convex_hull":
        raise ValueError(f"the angle-sort baseline is for the convex hull, not {cli.model.problem}")
    test = cli.datamodule.datasets["test"]
    metrics = PointerMetrics("convex_hull")
    metrics.update(test.points, [angle_sort(p) for p in test.points], test.targets)
    return {f"test/{name}": float(value) for name, value in metrics.compute().items()}


CARD = DemoCard(
    title="Pointer Networks: the planar convex hull",
    task=(
        "**Task.** Given 5 points drawn uniformly in the unit square, name the corners of their convex "
        "hull: a sequence of input positions, counter-clockwise, back to the start (`1 4 2 1`). "
        "**Data.** Generated on first use and cached in `data/pointer/`: random point sets with "
        "exact hulls from scipy (Quickhull); separate seeds for training, validation and test. "
        "**Model.** A Pointer Network (Vinyals, Fortunato & Jaitly 2015): an LSTM reads the points, a "
        "second LSTM emits the answer one position at a time, and its additive attention over the "
        "points *is* the output distribution, so the answer can only name input points whatever "
        "their number. Trained with teacher forcing (cross-entropy on the true next corner, Adam); "
        "tested with greedy decoding restricted to valid hulls. Tutorial: `docs/pointer.md`."
    ),
    paper_source=(
        "Vinyals et al., *Pointer Networks*, NeurIPS 2015 (arXiv 1506.03134), Table 1: the Ptr-Net "
        "trained on n = 5 to 50 (about 1M examples, SGD), tested on n = 5; the paper does not report "
        "invalid outputs as a rate"
    ),
    metrics=(
        MetricRow(
            "test/seq_acc",
            "accuracy",
            "share of test sets whose predicted hull is exactly the true one (same corners, same "
            "cycle); higher is better",
            paper=0.920,
            fmt="{:.1%}",
        ),
        MetricRow(
            "test/area_coverage",
            "area coverage",
            "area of the predicted polygon ÷ area of the true hull, averaged; an invalid polygon "
            "counts 0; higher is better",
            paper=0.996,
            fmt="{:.1%}",
        ),
        MetricRow(
            "test/invalid_rate",
            "invalid outputs",
            "share of predictions that are no closed, non-crossing polygon of distinct input "
            "points; lower is better",
            fmt="{:.2%}",
        ),
    ),
    baseline=Baseline(
        "*angle sort*, computed here on the same test set with the same metrics: every point, in "
        "counter-clockwise order around the centroid (Graham's scan without removing the points "
        "inside); no learning. It is exact only when all 5 points are corners, so the gap to it "
        "is what the network learned about leaving inner points out",
        angle_sort_metrics,
    ),
    figures={
        "examples": "Test examples: each prediction (green when exactly right, red otherwise) "
        "beside the true hull (blue).",
    },
    full_run_overlays=("configs/pointer/convex_hull.yaml",),
    full_run_note=(
        "The paper's convex-hull setting: trained on n = 5 to 50 and tested on n = 50, where "
        "Table 1 reports 69.6 % accuracy and 99.9 % area coverage. It takes hours on a CPU; add "
        "`--trainer.max_time 00:01:00:00` to cap it."
    ),
)
