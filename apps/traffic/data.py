"""The LightningDataModule of the traffic app: one series (simulated, or read from the public files),
split chronologically into forecasting windows.

Built-in data (no download): the traffic simulator (:mod:`apps.traffic.simulate`) writes METR-LA-style
files under ``--data.root`` and they are read back by the METR-LA reader. Public files:
:func:`apps.traffic.readers.read_series` (METR-LA / PEMS-BAY, PeMSD7(M), the T-GCN CSVs,
PEMS03/04/07/08, our own ``.npz``). The road graph, the normaliser and the input width reach the
model through the CLI's links (``data.graph`` → ``model.graph`` …), so they are known once
``__init__`` has run.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from apps.traffic.graph import SensorGraph
from apps.traffic.npzfiles import read_windows
from apps.traffic.readers import read_series
from apps.traffic.series import TrafficSeries
from apps.traffic.simulate import cached_simulation
from apps.traffic.windows import (
    MINUTES_PER_DAY,
    FileWindows,
    Masking,
    SeriesWindows,
    Standardizer,
    TrafficBatch,
    Window,
    collate,
    historical_average,
    ratio_split,
    time_of_day,
)
from core.train import AppDataModule, InputError

Format = Literal["simulated", "metr", "pemsd7", "tgcn", "pems", "npz"]


class TrafficDataModule(AppDataModule):
    """Windows of ``history`` steps in, ``horizon`` steps out, over one series and its road graph.

    Args:
        format: ``simulated`` (built-in), ``metr`` (METR-LA / PEMS-BAY ``.h5`` + ``adj_mx.pkl``),
            ``pemsd7`` (``V_*.csv`` + ``W_*.csv``), ``tgcn`` (``*_speed.csv`` + ``*_adj.csv``),
            ``pems`` (PEMS03/04/07/08 ``.npz`` + distance ``.csv``) or ``npz`` (our own format).
        values_file, graph_file, locations_file: the files, relative to ``root`` (or absolute).
        channel: which channel of ``[T, N, C]`` readings to forecast (PEMS04/08: 0 flow, 2 speed).
        start_time: time of the first step for files without timestamps (``"2012-03-01 00:00"``).
        history, horizon: T_in and T_out (12 and 12: one hour at 5-minute steps).
        split_ratios: train/val/test shares of the windows, in time order (DCRNN: 0.7/0.1/0.2).
        split_days: instead, whole days (train, val, test counts, in order); windows stay inside a
            day (STGCN's PeMSD7(M) protocol: 34/5/5).
        null_value, min_value: the missing-reading rule (:class:`~apps.traffic.windows.Masking`).
        time_of_day: add the time of day as an input channel (DCRNN's time-in-day feature).
        simulate_sensors, simulate_days: size of the simulated network and series.
        test_file: test on windows from this file instead (``.npz`` with ``x`` and ``y``).
        predict_file: forecast from the windows of this file (``.npz`` ``x`` [S, T_in, N(, C)], or
            a T-GCN-style ``.csv`` whose every ``history`` consecutive rows make a window);
            default: the test windows.
        predict_start_time: time of the file's first row, for the time-of-day channel of a CSV.
        root, batch_size, eval_batch_size, num_workers, seed: as every app (``seed``: the simulation's).
    """

    def __init__(
        self,
        format: Format = "simulated",
        values_file: str | None = None,
        graph_file: str | None = None,
        locations_file: str | None = None,
        channel: int = 0,
        start_time: str | None = None,
        history: int = 12,
        horizon: int = 12,
        split_ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
        split_days: tuple[int, int, int] | None = None,
        null_value: float | None = 0.0,
        min_value: float | None = None,
        time_of_day: bool = True,
        simulate_sensors: int = 64,
        simulate_days: int = 28,
        test_file: str | None = None,
        predict_file: str | None = None,
        predict_start_time: str | None = None,
        root: str = "data/traffic",
        batch_size: int = 32,
        eval_batch_size: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            root=root, batch_size=batch_size, eval_batch_size=eval_batch_size, **kwargs
        )
        self.history, self.horizon = history, horizon
        self.masking = Masking(null_value, min_value)
        self.use_time_of_day = time_of_day
        self.test_file, self.predict_file = test_file, predict_file
        self.predict_start_time = predict_start_time
        self.series = self._read(
            format, values_file, graph_file, locations_file, simulate_sensors, simulate_days
        )
        self.interval_minutes = self.series.interval_minutes
        self.timestamps = self._timestamps(self.series, start_time)
        values = self.series.values
        if not 0 <= channel < values.shape[2]:
            raise InputError(f"--data.channel {channel}: the readings have {values.shape[2]}")
        self.raw = values[:, :, channel].astype(np.float64)
        self.observed = self.masking.observed(self.raw)
        self.starts = self._split(split_ratios, split_days)
        train_steps = int(self.starts["train"][-1]) + history + horizon
        self.scaler = Standardizer.fit(self.raw[:train_steps], self.observed[:train_steps])
        self.historical = None
        if self.timestamps is not None:
            self.historical = historical_average(
                self.raw, self.observed, self.timestamps, train_steps, self.interval_minutes
            )
        self.graph = SensorGraph.from_adjacency(
            self.series.adjacency, self.series.sensor_ids, self.series.coordinates
        )
        self.in_channels = 1 + self.feature_count

    # --- loading ---------------------------------------------------------------------------------

    def _path(self, name: str | None, flag: str) -> Path | None:
        """``name`` under ``--data.root``, or as given (absolute, or from the working folder)."""
        if name is None:
            return None
        for path in (self.root / name, Path(name)):
            if path.is_file():
                return path
        raise InputError(f"--data.{flag} {name}: no such file in {self.root} nor here")

    def _read(
        self,
        format: Format,
        values_file: str | None,
        graph_file: str | None,
        locations_file: str | None,
        simulate_sensors: int,
        simulate_days: int,
    ) -> TrafficSeries:
        if format == "simulated":
            files = cached_simulation(self.root, simulate_sensors, simulate_days, self.seed)
            values_path, graph_path, locations_path = (
                files["speed"],
                files["adjacency"],
                files["locations"],
            )
            format = "metr"
        else:
            if values_file is None:
                raise InputError(f"--data.format {format} needs --data.values_file")
            values_path = self._path(values_file, "values_file")
            graph_path = self._path(graph_file, "graph_file")
            locations_path = self._path(locations_file, "locations_file")
        series = read_series(format, values_path, graph_path, locations_path)
        for role, path in (
            ("values", values_path),
            ("graph", graph_path),
            ("locations", locations_path),
        ):
            if path is not None:
                self.record_file(role, path)
        return series

    def _timestamps(self, series: TrafficSeries, start_time: str | None) -> np.ndarray | None:
        if series.timestamps is not None:
            return series.timestamps.astype("datetime64[ns]")
        if start_time is None:
            return None
        step = np.timedelta64(series.interval_minutes, "m")
        return np.datetime64(start_time, "ns") + step * np.arange(series.num_steps)

    @property
    def feature_count(self) -> int:
        return int(self.use_time_of_day)

    def _features(self, timestamps: np.ndarray | None, steps: int) -> np.ndarray:
        """``[steps, F]`` time features."""
        if not self.use_time_of_day:
            return np.zeros((steps, 0), dtype=np.float32)
        if timestamps is None:
            raise InputError(
                "--data.time_of_day needs timestamps: these files have none, give "
                "--data.start_time (or --data.predict_start_time), or --data.time_of_day false"
            )
        return time_of_day(timestamps)[:, None]

    # --- splits ----------------------------------------------------------------------------------

    def _split(
        self, ratios: tuple[float, float, float], days: tuple[int, int, int] | None
    ) -> dict[str, np.ndarray]:
        span = self.history + self.horizon
        if days is None:
            count = self.raw.shape[0] - span + 1
            if count < 3:
                raise InputError(f"{self.raw.shape[0]} steps are too few for {span}-step windows")
            return {name: np.asarray(r) for name, r in ratio_split(count, ratios).items()}
        if self.timestamps is None:
            raise InputError("--data.split_days needs timestamps (or --data.start_time)")
        day_of_step = self.timestamps.astype("datetime64[D]")
        unique_days = np.unique(day_of_step)
        if sum(days) > len(unique_days):
            raise InputError(f"--data.split_days {days}: the data has {len(unique_days)} days")
        bounds = np.cumsum([0, *days])
        splits = {}
        for name, lo, hi in zip(("train", "val", "test"), bounds[:-1], bounds[1:], strict=True):
            starts = []
            for day in unique_days[lo:hi]:
                steps = np.flatnonzero(day_of_step == day)
                starts.extend(range(steps[0], steps[-1] - span + 2))
            splits[name] = np.asarray(starts, dtype=np.int64)
        return splits

    # --- datasets --------------------------------------------------------------------------------

    @cached_property
    def _series(self) -> SeriesWindows:
        """The series as tensors, built once and shared by the splits' windows."""
        return SeriesWindows(
            self.raw,
            self.observed,
            self._features(self.timestamps, self.raw.shape[0]),
            self.scaler,
            self.history,
            self.horizon,
            np.zeros(0, dtype=np.int64),
            self.historical,
            self.timestamps,
        )

    def _series_windows(self, split: str) -> SeriesWindows:
        return self._series.with_starts(self.starts[split])

    def _file_windows(self, name: str, flag: str, needs_targets: bool) -> FileWindows:
        """Windows from a user's file. An ``.npz`` carries the model's channels (reading, then
        time of day, as DCRNN's window files); a CSV carries readings only, and the time of day
        comes from ``--data.predict_start_time`` (row s starts ``s`` intervals after it)."""
        path = self._path(name, flag)
        from_csv = path.suffix.lower() == ".csv"
        channels = 1 if from_csv else self.in_channels
        x, y = read_windows(path, self.graph.sensor_ids, self.history, channels)
        if needs_targets and y is None:
            raise InputError(f"{path}: testing needs targets (an array 'y' [S, T_out, N])")
        if y is not None and y.shape[1] != self.horizon:
            raise InputError(f"{path}: y has {y.shape[1]} horizon steps, expected {self.horizon}")
        self.record_file(flag.removesuffix("_file"), path)
        span, times = self.history + self.horizon, None
        if from_csv:
            if self.predict_start_time is not None:
                step = np.timedelta64(self.interval_minutes, "m")
                first = np.datetime64(self.predict_start_time, "ns")
                times = first + step * (np.arange(len(x))[:, None] + np.arange(span)[None, :])
            features = np.stack(
                [self._features(None if times is None else times[s], span) for s in range(len(x))]
            )
        else:
            past = x[:, :, 0, 1:]  # [S, T_in, F], the same for every sensor
            ahead = np.arange(1, self.horizon + 1) * self.interval_minutes / MINUTES_PER_DAY
            future = (past[:, -1:, :] + ahead[None, :, None]) % 1.0  # the time of day runs on
            features = np.concatenate([past, future], axis=1)
        targets_at = None if times is None else times[:, self.history]
        return FileWindows(x[..., 0], features, y, self.masking, self.scaler, targets_at)

    def collate(self, items: list[Window]) -> TrafficBatch:
        return collate(items)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.datasets["train"] = self._series_windows("train")
        if stage in ("fit", "validate"):
            self.datasets["val"] = self._series_windows("val")
        if stage == "test":
            self.datasets["test"] = (
                self._series_windows("test")
                if self.test_file is None
                else self._file_windows(self.test_file, "test_file", needs_targets=True)
            )
        if stage == "predict":
            self.datasets["predict"] = (
                self._series_windows("test")
                if self.predict_file is None
                else self._file_windows(self.predict_file, "predict_file", needs_targets=False)
            )

    def describe(self) -> dict[str, Any]:
        """What ``results.json`` records about the data: the base's counts and files, plus the
        masking rule, the split and the normaliser."""
        return {
            **super().describe(),
            "sensors": self.series.num_sensors,
            "steps": self.series.num_steps,
            "masking": {
                "null_value": self.masking.null_value,
                "min_value": self.masking.min_value,
                "applies_to": "inputs (filled with the training mean), loss, MAE, RMSE, MAPE",
            },
            "missing_share": float(1 - self.observed.mean()),
            "split": {name: [int(s[0]), int(s[-1])] for name, s in self.starts.items() if len(s)},
            "normaliser": {"mean": self.scaler.mean, "std": self.scaler.std},
        }
