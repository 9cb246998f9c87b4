"""Masked forecast metrics on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from apps.traffic.metrics import ForecastMetrics, masked_mae


def test_masked_metrics_ignore_missing_targets():
    # one window, 3 horizon steps, 2 sensors; sensor 1 at step 2 is missing (0 in the data)
    target = torch.tensor([[[10.0, 20.0], [10.0, 0.0], [40.0, 50.0]]])
    prediction = torch.tensor([[[12.0, 20.0], [7.0, 99.0], [40.0, 45.0]]])
    mask = target != 0
    metrics = ForecastMetrics(horizon=3, report_steps=(1, 2, 3), interval_minutes=5)
    metrics.update(prediction, target, mask)
    out = {k: float(v) for k, v in metrics.compute().items()}
    assert out["MAE@5min"] == pytest.approx(1.0)  # (2 + 0) / 2
    assert out["MAE@10min"] == pytest.approx(3.0)  # the missing reading does not count
    assert out["RMSE@15min"] == pytest.approx(math.sqrt(25 / 2))
    assert out["MAPE@5min"] == pytest.approx(100 * (0.2 + 0.0) / 2)
    assert out["MAE"] == pytest.approx((2 + 0 + 3 + 0 + 5) / 5)
    assert out["MAPE"] == pytest.approx(100 * (0.2 + 0.3 + 0.1) / 5)
    assert float(masked_mae(prediction, target, mask)) == pytest.approx(2.0)


def test_an_all_missing_horizon_is_nan_not_perfect():
    target = torch.zeros(2, 3, 4)
    metrics = ForecastMetrics(horizon=3, report_steps=(3,))
    metrics.update(torch.ones(2, 3, 4), target, target != 0)
    out = metrics.compute()
    assert math.isnan(out["MAE@15min"]) and math.isnan(out["RMSE"]) and math.isnan(out["MAPE"])


def test_unmasked_zero_targets_count_for_mae_but_not_mape():
    target = torch.tensor([[[0.0, 10.0]]])
    prediction = torch.tensor([[[1.0, 11.0]]])
    metrics = ForecastMetrics(horizon=1, report_steps=(1,))
    metrics.update(prediction, target, torch.ones_like(target, dtype=torch.bool))
    out = metrics.compute()
    assert float(out["MAE"]) == pytest.approx(1.0)
    assert float(out["MAPE"]) == pytest.approx(10.0)


def test_batches_accumulate_like_one():
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(6, 12, 5, generator=gen) * 60 + 1
    prediction = target + torch.randn(6, 12, 5, generator=gen)
    mask = torch.rand(6, 12, 5, generator=gen) > 0.2
    whole, parts = ForecastMetrics(12), ForecastMetrics(12)
    whole.update(prediction, target, mask)
    for rows in (slice(0, 2), slice(2, 6)):
        parts.update(prediction[rows], target[rows], mask[rows])
    for name, value in whole.compute().items():
        assert float(parts.compute()[name]) == pytest.approx(float(value)), name
