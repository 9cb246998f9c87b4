"""The traffic simulator: reproducible, METR-LA-shaped, with daily and weekly cycles, congestion
that travels upstream, and files the METR-LA reader can load."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from apps.traffic import simulate as simulate_module
from apps.traffic.simulate import cached_simulation, simulate, write_metr_files

SENSORS, DAYS = 24, 8  # from a Monday: six weekdays and one weekend


@pytest.fixture(scope="module")
def week():
    return simulate(SENSORS, DAYS, seed=3, progress=False)


def speeds(series) -> np.ndarray:
    """[T, N] float64 speeds, NaN where missing."""
    values = series.values[..., 0].astype(np.float64)
    return np.where(values > 0, values, np.nan)


def test_same_seed_same_data_other_seed_other_data():
    first = simulate(SENSORS, 1, seed=1, progress=False)
    again = simulate(SENSORS, 1, seed=1, progress=False)
    other = simulate(SENSORS, 1, seed=2, progress=False)
    np.testing.assert_array_equal(first.values, again.values)
    np.testing.assert_array_equal(first.adjacency, again.adjacency)
    np.testing.assert_array_equal(first.coordinates, again.coordinates)
    assert not np.array_equal(first.values, other.values)
    assert not np.array_equal(first.adjacency, other.adjacency)


def test_shapes_types_ids_and_timestamps(week):
    steps = DAYS * 24 * 12
    assert week.values.shape == (steps, SENSORS, 1)
    assert week.values.dtype == np.float32
    assert week.adjacency.shape == (SENSORS, SENSORS)
    assert week.adjacency.dtype == np.float32
    assert week.coordinates.shape == (SENSORS, 2)
    assert week.sensor_ids == [f"s{i:03d}" for i in range(SENSORS)]
    assert week.timestamps.dtype == np.dtype("datetime64[ns]")
    assert week.timestamps[0] == np.datetime64("2024-03-04T00:00", "ns")
    assert (np.diff(week.timestamps) == np.timedelta64(5, "m")).all()
    assert week.interval_minutes == 5
    assert week.files == []


def test_coarser_interval_spans_the_same_days():
    series = simulate(SENSORS, 1, seed=0, interval_minutes=15, progress=False)
    assert series.values.shape == (96, SENSORS, 1)
    assert (np.diff(series.timestamps) == np.timedelta64(15, "m")).all()


def test_road_graph_is_directed_and_connected(week):
    adjacency = week.adjacency
    assert not np.allclose(adjacency, adjacency.T)
    np.testing.assert_array_equal(np.diag(adjacency), 1.0)
    assert adjacency.min() >= 0 and adjacency.max() <= 1
    assert not ((adjacency > 0) & (adjacency < 0.1)).any()  # thresholded like DCRNN's
    edges = adjacency > 0
    np.fill_diagonal(edges, False)
    assert (edges.sum(0) + edges.sum(1) > 0).all()


def test_large_networks_keep_every_sensor_linked():
    series = simulate(300, 1, seed=0, progress=False)
    edges = series.adjacency > 0
    np.fill_diagonal(edges, False)
    assert (edges.sum(0) + edges.sum(1) > 0).all()
    assert edges.sum(1).mean() < 15  # a sparse road graph, not everything within reach


@pytest.mark.parametrize("rate", [0.0, 0.03, 0.08])
def test_missing_share_matches_the_request_and_is_zero(rate):
    values = simulate(SENSORS, 2, seed=0, missing_rate=rate, progress=False).values
    missing = values == 0
    assert missing.mean() == pytest.approx(rate, abs=0.15 * rate + 1e-9)
    observed = values[~missing]
    assert observed.min() >= 3.0  # a real reading is never mistaken for a gap


def test_missing_readings_include_outages(week):
    missing = week.values[..., 0] == 0
    # an outage: one sensor silent for 30 min (6 readings) or longer in a row
    runs = np.zeros(SENSORS, dtype=int)
    longest = np.zeros(SENSORS, dtype=int)
    for row in missing:
        runs = np.where(row, runs + 1, 0)
        longest = np.maximum(longest, runs)
    assert (longest >= 6).sum() >= 2
    assert 0.02 <= missing.mean() <= 0.08


def test_speeds_are_plausible(week):
    observed = week.values[week.values > 0]
    assert observed.min() >= 3 and observed.max() <= 80
    assert 50 <= np.median(observed) <= 70  # mostly free flow …
    assert (observed < 40).mean() > 0.005  # … with real jams


def test_daily_and_weekly_cycles(week):
    speed = speeds(week)
    day = week.timestamps.astype("datetime64[D]")
    hour = (week.timestamps - day) / np.timedelta64(1, "h")
    weekend = (day.astype(np.int64) + 3) % 7 >= 5
    peak = ((hour >= 7) & (hour < 9)) | ((hour >= 16) & (hour < 19))
    night = hour < 4
    weekday_peak = np.nanmean(speed[peak & ~weekend])
    assert weekday_peak < np.nanmean(speed[night & ~weekend]) - 3
    assert np.nanmean(speed[peak & weekend]) > weekday_peak + 2


def test_congestion_travels_upstream(week):
    """A sharp slowdown reaches the sensor upstream (edge into the one that slowed) a few
    minutes later: the cross-correlation of speed drops peaks at a positive lag, on average."""
    # gaps filled from the last reading; a centred 15-minute mean takes the edge off detector noise
    speed = pd.DataFrame(speeds(week)).ffill().bfill().rolling(3, center=True, min_periods=1)
    drop = np.maximum(-np.diff(speed.mean().to_numpy(), axis=0), 0.0)  # [T-1, N]
    edges = week.adjacency > 0
    np.fill_diagonal(edges, False)
    upstream, downstream = np.nonzero(edges)
    lags = np.arange(-6, 7)

    def correlation(first: np.ndarray, then: np.ndarray, lag: int) -> float:
        """corr(first[t], then[t + lag])."""
        if lag < 0:
            return correlation(then, first, -lag)
        a, b = first[: len(first) - lag], then[lag:]
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-12))

    curves = np.array(
        [
            [correlation(drop[:, d], drop[:, u], lag) for lag in lags]
            for u, d in zip(upstream, downstream, strict=True)
        ]
    )
    mean = curves.mean(axis=0)
    assert lags[mean.argmax()] > 0
    assert mean[lags > 0].mean() > 1.5 * mean[lags < 0].mean()


def test_metr_files_round_trip(week, tmp_path):
    paths = write_metr_files(week, tmp_path / "sim")
    assert {p.name for p in paths.values()} == {
        "speed.h5",
        "adj_mx.pkl",
        "graph_sensor_locations.csv",
    }
    assert not list((tmp_path / "sim").glob("*.tmp"))

    frame = pd.read_hdf(paths["speed"], key="df")
    np.testing.assert_array_equal(frame.to_numpy(dtype=np.float32), week.values[..., 0])
    assert list(frame.columns) == week.sensor_ids
    np.testing.assert_array_equal(frame.index.to_numpy().astype("datetime64[ns]"), week.timestamps)

    with open(paths["adjacency"], "rb") as f:
        ids, index, adjacency = pickle.load(f, encoding="latin1")
    assert ids == week.sensor_ids
    assert index == {sensor: i for i, sensor in enumerate(week.sensor_ids)}
    assert adjacency.dtype == np.float32
    np.testing.assert_array_equal(adjacency, week.adjacency)

    locations = pd.read_csv(paths["locations"], dtype={"sensor_id": str})
    assert list(locations.columns) == ["index", "sensor_id", "latitude", "longitude"]
    assert list(locations["sensor_id"]) == week.sensor_ids
    np.testing.assert_allclose(
        locations[["latitude", "longitude"]].to_numpy(), week.coordinates, atol=1e-6
    )


def test_cached_simulation_writes_once(tmp_path, monkeypatch):
    paths = cached_simulation(tmp_path, num_sensors=12, days=1, seed=0, progress=False)
    assert paths["speed"].parent == tmp_path / "sim_n12_d1_s0"
    assert all(p.exists() for p in paths.values())
    stamps = {key: p.stat().st_mtime_ns for key, p in paths.items()}

    def no_simulation(*args, **kwargs):
        raise AssertionError("simulated again although the files were there")

    monkeypatch.setattr(simulate_module, "simulate", no_simulation)
    monkeypatch.setattr(simulate_module, "write_metr_files", no_simulation)
    assert cached_simulation(tmp_path, num_sensors=12, days=1, seed=0, progress=False) == paths
    assert {key: p.stat().st_mtime_ns for key, p in paths.items()} == stamps


def test_cached_simulation_rewrites_a_missing_file(tmp_path):
    paths = cached_simulation(tmp_path, num_sensors=12, days=1, seed=0, progress=False)
    paths["adjacency"].unlink()
    cached_simulation(tmp_path, num_sensors=12, days=1, seed=0, progress=False)
    assert paths["adjacency"].exists()


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_sensors"):
        simulate(3, 1, progress=False)
    with pytest.raises(ValueError, match="missing_rate"):
        simulate(SENSORS, 1, missing_rate=0.9, progress=False)
    with pytest.raises(ValueError, match="interval_minutes"):
        simulate(SENSORS, 1, interval_minutes=7, progress=False)
