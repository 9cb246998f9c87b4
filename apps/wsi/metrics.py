"""Slide-level classification metrics as the field reports them: accuracy, macro AUROC (one class
against the rest, averaged), **macro** F1 and their per-class values.

ACMIL's own script reports torchmetrics' default (micro) F1, which for single-label classification
equals accuracy; we report macro F1 (the mean of the classes' F1), which a minority class moves.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from apps.wsi.model import stkim_mask


def auroc_one_vs_rest(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores [N]`` for the boolean labels ``positive [N]``: the
    probability that a random positive scores above a random negative (ties count half); NaN when
    either side is empty."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)  # average ranks for ties
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def slide_scores(probs: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """The metrics of ``probs [N, C]`` (class probabilities) against ``labels [N]``.

    Returns ``accuracy``, ``balanced_accuracy`` (mean per-class recall), ``AUROC`` (macro),
    ``F1`` (macro), ``AUROC+F1`` (ACMIL's model-selection score) and per class ``AUROC/<name>``,
    ``F1/<name>``, ``recall/<name>``. A class without test slides gets NaN per-class values and is
    left out of the macro means.
    """
    predicted = probs.argmax(1)
    out: dict[str, float] = {"accuracy": float((predicted == labels).mean())}
    aurocs, f1s, recalls = [], [], []
    for c, name in enumerate(class_names):
        truth, guess = labels == c, predicted == c
        hits = int((truth & guess).sum())
        recall = hits / truth.sum() if truth.any() else float("nan")
        # F1 = 2·precision·recall / (precision + recall) = 2·hits / (|truth| + |guess|)
        f1 = 2 * hits / (truth.sum() + guess.sum()) if truth.any() else float("nan")
        auroc = auroc_one_vs_rest(probs[:, c], truth)
        out |= {f"AUROC/{name}": auroc, f"F1/{name}": float(f1), f"recall/{name}": float(recall)}
        aurocs.append(auroc)
        f1s.append(f1)
        recalls.append(recall)
    out["balanced_accuracy"] = float(np.nanmean(recalls))
    out["AUROC"] = float(np.nanmean(aurocs)) if not np.isnan(aurocs).all() else float("nan")
    out["F1"] = float(np.nanmean(f1s))
    out["AUROC+F1"] = out["AUROC"] + out["F1"]
    return out


class SlideMetrics(Metric):
    """Collects every slide's class probabilities and label (exact across processes: the states
    are concatenated) and computes :func:`slide_scores`."""

    full_state_update = False

    def __init__(self, class_names: list[str]) -> None:
        super().__init__()
        self.class_names = list(class_names)
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        """``probs [N, C]``, ``labels [N]``."""
        self.probs.append(probs.detach().float())
        self.labels.append(labels.detach().long())

    def compute(self) -> dict[str, torch.Tensor]:
        probs = dim_zero_cat(self.probs).cpu().numpy()
        labels = dim_zero_cat(self.labels).cpu().numpy()
        scores = slide_scores(probs, labels, self.class_names)
        return {name: torch.tensor(value, dtype=torch.float64) for name, value in scores.items()}


def localisation_scores(weights: np.ndarray, tumour: np.ndarray) -> tuple[float, float, float]:
    """How well one positive slide's attention ``weights [N]`` finds its tumour tiles ``tumour
    [N]`` (bool): the R-precision (of its n most attended tiles, n = its number of tumour tiles, the
    share that are tumour), the attention mass on tumour tiles, and the tumour share of all tiles
    (what uniform or random attention scores on both)."""
    n = int(tumour.sum())
    chosen = np.argsort(-weights, kind="stable")[:n]
    return float(tumour[chosen].mean()), float(weights[tumour].sum()), float(tumour.mean())


class LocalisationMetrics(Metric):
    """Over the slides that have tumour tiles marked (the synthetic slides' planted regions):
    ``tumour_r_precision``, ``tumour_attention_mass`` and ``tumour_tile_share`` (chance), each a
    mean over slides."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("precision", "mass", "share", "slides"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64),
                           dist_reduce_fx="sum")  # fmt: skip

    def update(self, weights: np.ndarray, tumour: np.ndarray) -> None:
        """One slide: ``weights [N]`` (the slide head's attention), ``tumour [N]`` bool."""
        if not tumour.any():
            return
        precision, mass, share = localisation_scores(weights, tumour)
        self.precision += precision
        self.mass += mass
        self.share += share
        self.slides += 1

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.slides.clamp_min(1)
        return {
            "tumour_r_precision": self.precision / n,
            "tumour_attention_mass": self.mass / n,
            "tumour_tile_share": self.share / n,
        }


def masked_by_stkim(
    weights: torch.Tensor, top_k: int, mask_drop: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One bag's attention ``weights [n, K]`` as STKIM would leave it: masking a logit to −∞ and
    taking the softmax equals zeroing that weight and renormalising, and the weights rank the
    instances as the logits do, so the masked attention follows from the weights alone."""
    cu_seqlens = torch.tensor([0, weights.shape[0]], dtype=torch.int32)
    kept = weights * stkim_mask(weights, cu_seqlens, top_k, mask_drop, generator)
    return kept / kept.sum(0, keepdim=True).clamp_min(1e-12)
