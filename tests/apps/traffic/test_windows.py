"""Windows, the normaliser, masking, splits and the two baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apps.traffic.windows import (
    Masking,
    SeriesWindows,
    Standardizer,
    collate,
    historical_average,
    last_observed,
    ratio_split,
    slot_indices,
    time_of_day,
)
from core.train.errors import InputError


def test_standardizer_round_trips_and_ignores_missing():
    values = np.array([[10.0, 0.0], [30.0, 50.0]])
    scaler = Standardizer.fit(values, values != 0)
    assert scaler.mean == pytest.approx(30.0)  # mean of 10, 30, 50: the zero is missing
    x = torch.tensor([12.5, 61.0, -3.0])
    torch.testing.assert_close(scaler.denormalize(scaler.normalize(x)), x)
    with pytest.raises(InputError, match="no observed reading"):
        Standardizer.fit(values, np.zeros_like(values, dtype=bool))


def test_masking_rules():
    values = np.array([0.0, 3.0, 12.0, np.nan, np.inf])
    assert Masking().observed(values).tolist() == [False, True, True, False, False]
    assert Masking(min_value=5.0).observed(values).tolist() == [False, False, True, False, False]
    assert Masking(null_value=None).observed(values).tolist() == [True, True, True, False, False]


def test_time_features_and_slots():
    times = np.datetime64("2024-03-04 00:00") + np.timedelta64(5, "m") * np.arange(3)
    times = np.append(times, np.datetime64("2024-03-05 12:00"))  # Monday, then Tuesday noon
    assert time_of_day(times).tolist() == pytest.approx([0, 5 / 1440, 10 / 1440, 0.5])
    assert slot_indices(times, 5, "day").tolist() == [0, 1, 2, 144]
    assert slot_indices(times, 5, "week").tolist() == [0, 1, 2, 288 + 144]


def test_ratio_split_is_dcrnn_s():
    split = ratio_split(100, (0.7, 0.1, 0.2))
    assert (split["train"], split["val"], split["test"]) == (
        range(70),
        range(70, 80),
        range(80, 100),
    )
    with pytest.raises(InputError):
        ratio_split(100, (0.7, 0.2, 0.2))


def test_historical_average_falls_back_from_week_to_day_slots():
    steps_per_day = 288
    times = np.datetime64("2024-03-04") + np.timedelta64(5, "m") * np.arange(9 * steps_per_day)
    values = np.tile(np.arange(steps_per_day, dtype=float), 9)[:, None] + 1.0
    values[steps_per_day : 2 * steps_per_day] += 100.0  # the first Tuesday is different
    observed = np.ones_like(values, dtype=bool)
    forecast = historical_average(values, observed, times, 8 * steps_per_day, 5)
    # day 8 (a Tuesday) has its week slot in training: the first Tuesday
    np.testing.assert_allclose(
        forecast[8 * steps_per_day :, 0], values[8 * steps_per_day :, 0] + 100
    )
    # a training step uses the mean of its week slot: Monday 0 and Monday 7
    np.testing.assert_allclose(forecast[:steps_per_day, 0], values[:steps_per_day, 0])
    short = historical_average(values, observed, times, 2 * steps_per_day, 5)  # Mon + Tue only
    wednesday = slice(2 * steps_per_day, 3 * steps_per_day)
    np.testing.assert_allclose(short[wednesday, 0], values[wednesday, 0] + 50)  # day-slot mean


def test_last_observed_skips_missing_readings():
    raw = torch.tensor([[1.0, 5.0, 0.0], [2.0, 0.0, 0.0]])
    observed = raw != 0
    fallback = torch.full((3,), 9.0)
    assert last_observed(raw, observed, fallback).tolist() == [2.0, 5.0, 9.0]


def test_windows_are_lazy_slices_of_the_series():
    steps, sensors = 40, 3
    rng = np.random.default_rng(0)
    raw = rng.uniform(20, 70, (steps, sensors))
    raw[15, 1] = 0.0
    observed = Masking().observed(raw)
    scaler = Standardizer.fit(raw, observed)
    features = np.linspace(0, 1, steps, dtype=np.float32)[:, None]
    data = SeriesWindows(raw, observed, features, scaler, 12, 4, np.array([0, 5]), None, None)
    assert len(data) == 2
    batch = collate([data[0], data[1]])
    assert batch.x.shape == (2, 12, 3, 2) and batch.y.shape == (2, 4, 3)
    assert batch.future.shape == (2, 4, 3, 1)
    np.testing.assert_allclose(batch.y[1].numpy(), np.where(observed, raw, 0)[17:21], rtol=1e-6)
    normal = scaler.normalize(torch.tensor(raw[5:17], dtype=torch.float32))
    expected = torch.where(torch.from_numpy(observed[5:17]), normal, torch.zeros(()))
    torch.testing.assert_close(batch.x[1, ..., 0], expected)
    assert batch.x[1, 10, 1, 0] == 0  # the missing reading: the training mean
    torch.testing.assert_close(batch.x[1, :, 0, 1], torch.from_numpy(features[5:17, 0]))
    assert batch.start.tolist() == [12, 17]
    assert batch.historical is None


def test_splits_share_the_series_tensors():
    raw = np.random.default_rng(1).uniform(20, 70, (30, 2))
    observed = Masking().observed(raw)
    features = np.zeros((30, 0), dtype=np.float32)
    whole = SeriesWindows(
        raw, observed, features, Standardizer.fit(raw, observed), 4, 2, np.arange(3)
    )
    later = whole.with_starts(np.array([10, 20]))
    assert len(whole) == 3 and len(later) == 2
    assert later.inputs is whole.inputs and later.raw is whole.raw
    assert later[1].start == 24 and whole[0].start == 4
