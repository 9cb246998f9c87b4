"""Forecasting windows over a series, built lazily: a window is a start index, and its history and
horizon are slices taken when the loader asks (no ``[S, 12, N]`` copy of the data). Also the pieces
every window needs: the missing-value rule, the z-score normaliser, time-of-day features, the
chronological splits and the two baselines (historical average, last value)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from core.train.errors import InputError

MINUTES_PER_DAY = 24 * 60


@dataclass(frozen=True)
class Standardizer:
    """z-score of the target channel, fitted on the training split's observed readings."""

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, values: np.ndarray, observed: np.ndarray) -> Standardizer:
        seen = values[observed]
        if seen.size == 0:
            raise InputError("the training split has no observed reading to normalise with")
        return cls(float(seen.mean()), float(max(seen.std(), 1e-6)))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


@dataclass(frozen=True)
class Masking:
    """Which readings count as missing: equal to ``null_value`` (0 in the public files, where a
    broken loop detector reports 0), below ``min_value``, or not finite. Applied to the inputs (filled
    with the training mean), the loss and every metric alike; None switches a rule off."""

    null_value: float | None = 0.0
    min_value: float | None = None

    def observed(self, values: np.ndarray) -> np.ndarray:
        keep = np.isfinite(values)
        if self.null_value is not None:
            keep &= values != self.null_value
        if self.min_value is not None:
            keep &= values >= self.min_value
        return keep


def time_of_day(timestamps: np.ndarray) -> np.ndarray:
    """``[T]`` fraction of the day in [0, 1) (DCRNN's time-in-day feature)."""
    minutes = (timestamps - timestamps.astype("datetime64[D]")) / np.timedelta64(1, "m")
    return (minutes / MINUTES_PER_DAY).astype(np.float32)


def slot_indices(timestamps: np.ndarray, interval_minutes: int, period: Literal["day", "week"]):
    """``[T]`` index of each step's slot in the day (0 … 287 at 5 min) or in the week."""
    minutes = (timestamps - timestamps.astype("datetime64[D]")) / np.timedelta64(1, "m")
    slot = (minutes // interval_minutes).astype(np.int64)
    if period == "day":
        return slot
    weekday = (timestamps.astype("datetime64[D]").astype(np.int64) + 3) % 7  # 1970-01-01: Thu
    return weekday * (MINUTES_PER_DAY // interval_minutes) + slot


def historical_average(
    values: np.ndarray,
    observed: np.ndarray,
    timestamps: np.ndarray,
    train_steps: int,
    interval_minutes: int,
) -> np.ndarray:
    """The historical-average baseline for every step, ``[T, N]``: the mean of the training split's
    observed readings at the same slot of the week; where that slot was never observed in training
    (less than a week of it), the same slot of the day; then the sensor's training mean."""
    steps, sensors = values.shape
    forecast = np.full((steps, sensors), np.nan)
    for period in ("week", "day"):
        slots = slot_indices(timestamps, interval_minutes, period)
        n_slots = int(slots.max()) + 1
        sums, counts = np.zeros((n_slots, sensors)), np.zeros((n_slots, sensors))
        train = slice(0, train_steps)
        np.add.at(sums, slots[train], np.where(observed[train], values[train], 0.0))
        np.add.at(counts, slots[train], observed[train])
        with np.errstate(invalid="ignore", divide="ignore"):
            table = sums / counts
        forecast = np.where(np.isnan(forecast), table[slots], forecast)
    with np.errstate(invalid="ignore"):
        sensor_mean = np.nanmean(np.where(observed[:train_steps], values[:train_steps], np.nan), 0)
    forecast = np.where(np.isnan(forecast), sensor_mean[None], forecast)
    return np.nan_to_num(forecast).astype(np.float32)


def ratio_split(num_windows: int, ratios: tuple[float, float, float]) -> dict[str, range]:
    """DCRNN's split of consecutive windows: the first ``round(0.7 S)`` train, the last
    ``round(0.2 S)`` test, the rest validation (window order = time order)."""
    if not np.isclose(sum(ratios), 1.0) or min(ratios) < 0:
        raise InputError(f"split ratios must be ≥ 0 and sum to 1, got {ratios}")
    n_test = round(ratios[2] * num_windows)
    n_train = round(ratios[0] * num_windows)
    return {
        "train": range(0, n_train),
        "val": range(n_train, num_windows - n_test),
        "test": range(num_windows - n_test, num_windows),
    }


@dataclass
class TrafficBatch:
    """Windows of B forecasts for N sensors.

    ``x [B, T_in, N, C]``: normalised readings (missing → 0, the training mean) and time features;
    ``future [B, T_out, N, C − 1]``: the time features of the horizon (for rollout);
    ``y [B, T_out, N]`` targets in the data's units and ``y_mask`` (True = observed), None when
    predicting without targets; ``last_value [B, N]``: the last observed reading of each history (the
    persistence baseline); ``historical [B, T_out, N]``: the historical-average baseline (None without
    timestamps); ``start [B]``: index of each window's first forecast step in its series (−1 for
    windows from a file); ``target_time``: its time, when known.
    """

    x: torch.Tensor
    future: torch.Tensor
    y: torch.Tensor | None
    y_mask: torch.Tensor | None
    last_value: torch.Tensor
    historical: torch.Tensor | None
    start: torch.Tensor
    target_time: list[np.datetime64 | None]

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class Window:
    """One dataset item (see :class:`TrafficBatch` for the fields, without the batch axis)."""

    x: torch.Tensor
    future: torch.Tensor
    y: torch.Tensor | None
    y_mask: torch.Tensor | None
    last_value: torch.Tensor
    historical: torch.Tensor | None
    start: int
    target_time: np.datetime64 | None


def collate(items: list[Window]) -> TrafficBatch:
    def stack(name: str) -> torch.Tensor | None:
        values = [getattr(item, name) for item in items]
        return None if any(v is None for v in values) else torch.stack(values)

    return TrafficBatch(
        x=stack("x"),
        future=stack("future"),
        y=stack("y"),
        y_mask=stack("y_mask"),
        last_value=stack("last_value"),
        historical=stack("historical"),
        start=torch.tensor([item.start for item in items]),
        target_time=[item.target_time for item in items],
    )


def last_observed(
    raw: torch.Tensor, observed: torch.Tensor, fallback: torch.Tensor
) -> torch.Tensor:
    """``[N]``: each sensor's latest observed reading in ``raw [T, N]``; ``fallback`` where none."""
    steps = torch.arange(raw.shape[0])[:, None].expand_as(raw)
    latest = torch.where(observed, steps, -1).max(0).values
    value = raw[latest.clamp_min(0), torch.arange(raw.shape[1])]
    return torch.where(latest >= 0, value, fallback)


class SeriesWindows(Dataset):
    """The windows starting at ``starts`` over one series.

    Args:
        raw: ``[T, N]`` target-channel readings in the data's units.
        observed: ``[T, N]`` True = observed.
        features: ``[T, F]`` time features shared by every sensor (F may be 0).
        scaler: the normaliser of the readings.
        history, horizon: T_in, T_out.
        starts: first history step of each window.
        historical: ``[T, N]`` historical-average forecast of every step, or None.
        timestamps: ``[T]`` or None.
    """

    def __init__(
        self,
        raw: np.ndarray,
        observed: np.ndarray,
        features: np.ndarray,
        scaler: Standardizer,
        history: int,
        horizon: int,
        starts: np.ndarray,
        historical: np.ndarray | None = None,
        timestamps: np.ndarray | None = None,
    ) -> None:
        self.raw = torch.from_numpy(np.where(observed, raw, 0.0).astype(np.float32))
        self.observed = torch.from_numpy(observed)
        normal = scaler.normalize(self.raw)
        self.inputs = torch.where(self.observed, normal, torch.zeros(()))
        self.features = torch.from_numpy(features.astype(np.float32))
        self.fallback = torch.full((raw.shape[1],), scaler.mean)
        self.history, self.horizon = history, horizon
        self.starts = np.asarray(starts, dtype=np.int64)
        self.historical = None if historical is None else torch.from_numpy(historical)
        self.timestamps = timestamps

    def with_starts(self, starts: np.ndarray) -> SeriesWindows:
        """The windows starting at ``starts`` over the same series, its tensors shared, not copied
        (one series serves the train, validation and test splits)."""
        view = copy.copy(self)
        view.starts = np.asarray(starts, dtype=np.int64)
        return view

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> Window:
        t0 = int(self.starts[index])
        t1, t2 = t0 + self.history, t0 + self.history + self.horizon
        n = self.raw.shape[1]

        def with_features(values: torch.Tensor, start: int, stop: int) -> torch.Tensor:
            features = self.features[start:stop, None, :].expand(-1, n, -1)
            return torch.cat([values[..., None], features], dim=-1)

        return Window(
            x=with_features(self.inputs[t0:t1], t0, t1),
            future=self.features[t1:t2, None, :].expand(-1, n, -1).clone(),
            y=self.raw[t1:t2],
            y_mask=self.observed[t1:t2],
            last_value=last_observed(self.raw[t0:t1], self.observed[t0:t1], self.fallback),
            historical=None if self.historical is None else self.historical[t1:t2],
            start=t1,
            target_time=None if self.timestamps is None else self.timestamps[t1],
        )


class FileWindows(Dataset):
    """Windows from a user's file: readings ``x [S, T_in, N]`` in the data's units, their time
    features ``features [S, T_in + T_out, F]`` (history then horizon), optional targets
    ``y [S, T_out, N]`` and the time of each window's first forecast step ``target_times [S]``."""

    def __init__(
        self,
        x: np.ndarray,
        features: np.ndarray,
        y: np.ndarray | None,
        masking: Masking,
        scaler: Standardizer,
        target_times: np.ndarray | None = None,
    ) -> None:
        self.x, self.features, self.y = x, torch.from_numpy(features.astype(np.float32)), y
        self.masking, self.scaler, self.target_times = masking, scaler, target_times

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> Window:
        history = self.x[index]
        steps, n = history.shape
        observed = torch.from_numpy(self.masking.observed(history))
        raw = torch.from_numpy(np.where(observed, history, 0.0).astype(np.float32))
        normal = torch.where(observed, self.scaler.normalize(raw), torch.zeros(()))
        features = self.features[index][:, None, :].expand(-1, n, -1)
        y = y_mask = None
        if self.y is not None:
            target = self.y[index].astype(np.float32)
            y_mask = torch.from_numpy(self.masking.observed(target))
            y = torch.from_numpy(np.where(y_mask, target, 0.0).astype(np.float32))
        return Window(
            x=torch.cat([normal[..., None], features[:steps]], dim=-1),
            future=features[steps:].clone(),
            y=y,
            y_mask=y_mask,
            last_value=last_observed(raw, observed, torch.full((n,), self.scaler.mean)),
            historical=None,
            start=-1,
            target_time=None if self.target_times is None else self.target_times[index],
        )
