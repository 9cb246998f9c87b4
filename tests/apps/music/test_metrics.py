"""NLL per token and per note, checked on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from apps.music.metrics import LikelihoodMetrics, token_nll
from apps.music.tokens import END, PAD


def test_token_nll_is_zero_at_padding_and_matches_the_log_softmax() -> None:
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.2, 0.2, 0.6]]]))
    nll = token_nll(logits, torch.tensor([[1, PAD]]))
    assert nll[0].tolist() == pytest.approx([math.log(4), 0.0])


def test_per_token_and_per_note_averages() -> None:
    metric = LikelihoodMetrics(first_note_token=3)
    targets = torch.tensor([[4, 5, END, PAD], [3, 7, PAD, PAD]])
    nll = torch.tensor([[1.0, 2.0, 9.0, 0.0], [3.0, 4.0, 0.0, 0.0]])
    metric.update(nll, targets)
    out = metric.compute()
    assert out["nll_per_token"] == pytest.approx(19 / 5)  # END counts as a token
    assert out["nll_per_note"] == pytest.approx(10 / 4)  # but not as a note
    assert out["perplexity"] == pytest.approx(math.exp(19 / 5))


def test_events_report_no_per_note_value() -> None:
    metric = LikelihoodMetrics(first_note_token=None)
    metric.update(torch.tensor([[0.5]]), torch.tensor([[10]]))
    assert set(metric.compute()) == {"nll_per_token", "perplexity"}
