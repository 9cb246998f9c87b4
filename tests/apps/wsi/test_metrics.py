"""Slide metrics on hand-computed cases: AUROC by counting pairs, macro F1 (not micro), the
localisation scores, and the torchmetrics wrappers' accumulation."""

from __future__ import annotations

import math

import numpy as np
import torch

from apps.wsi.metrics import (
    LocalisationMetrics,
    SlideMetrics,
    auroc_one_vs_rest,
    localisation_scores,
    slide_scores,
)


def test_auroc_counts_ordered_pairs_with_ties_as_half():
    scores = np.array([0.9, 0.4, 0.4, 0.1, 0.8])
    positive = np.array([True, True, False, False, False])
    # pairs (pos, neg): 0.9 beats all 3; 0.4 ties 0.4, beats 0.1, loses to 0.8 → 1.5; total 4.5/6
    assert auroc_one_vs_rest(scores, positive) == 4.5 / 6
    assert math.isnan(auroc_one_vs_rest(scores, np.ones(5, dtype=bool)))


def test_macro_f1_differs_from_accuracy_on_an_imbalanced_set():
    labels = np.array([0, 0, 0, 0, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.4, 0.6], [0.6, 0.4]])
    scores = slide_scores(probs, labels, ["normal", "tumour"])
    assert scores["accuracy"] == 0.6
    # normal: 3 hits, 4 true, 4 guessed → 6/8; tumour: 0 hits → 0; macro 0.375
    assert scores["F1/normal"] == 0.75 and scores["F1/tumour"] == 0.0
    assert scores["F1"] == 0.375
    assert scores["recall/normal"] == 0.75 and scores["balanced_accuracy"] == 0.375
    # tumour's probability ranks the tumour slide (0.4) above 3 of 4 normals
    assert scores["AUROC/tumour"] == 0.75 and scores["AUROC"] == 0.75
    assert scores["AUROC+F1"] == 0.75 + 0.375


def test_slide_metrics_accumulate_batches():
    metric = SlideMetrics(["a", "b", "c"])
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    labels = torch.tensor([0, 1, 2, 1])
    metric.update(probs[:2], labels[:2])
    metric.update(probs[2:], labels[2:])
    values = metric.compute()
    expected = slide_scores(probs.numpy(), labels.numpy(), ["a", "b", "c"])
    assert float(values["accuracy"]) == 0.75 == expected["accuracy"]
    assert float(values["F1"]) == expected["F1"]


def test_localisation_scores_and_their_mean_over_tumour_slides():
    weights = np.array([0.5, 0.3, 0.1, 0.05, 0.05])
    tumour = np.array([True, False, True, False, False])
    # R-precision: of the 2 most attended tiles (2 tumour tiles), one is tumour
    assert localisation_scores(weights, tumour) == (0.5, 0.6, 0.4)
    metric = LocalisationMetrics()
    metric.update(weights, tumour)
    metric.update(weights, np.zeros(5, dtype=bool))  # a normal slide: not counted
    metric.update(np.array([0.1, 0.9]), np.array([False, True]))
    values = metric.compute()
    assert float(metric.slides) == 2
    assert float(values["tumour_r_precision"]) == (0.5 + 1.0) / 2
    assert math.isclose(float(values["tumour_attention_mass"]), (0.6 + 0.9) / 2)
    assert float(values["tumour_tile_share"]) == (0.4 + 0.5) / 2
