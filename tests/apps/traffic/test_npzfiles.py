"""Our own .npz (read back exactly as written; bad arrays named by key and index) and the prediction
window files (.npz or a T-GCN-style CSV, columns put in the model's sensor order)."""

from __future__ import annotations

import numpy as np
import pytest

from apps.traffic.metr import read_metr
from apps.traffic.npzfiles import read_npz, read_windows, write_npz
from core.train.errors import InputError
from tests.apps.traffic.samples import H5_IDS, LOCATIONS, write, write_h5, write_pickle

# --- our npz -------------------------------------------------------------------------------------


def test_npz_round_trip_keeps_everything(tmp_path):
    locations = write(tmp_path, "loc.csv", LOCATIONS)
    series = read_metr(write_h5(tmp_path), write_pickle(tmp_path), locations)
    out = write_npz(series, tmp_path / "out.data")  # the exact name, no ".npz" appended
    assert out.is_file() and out.name == "out.data"
    back = read_npz(out)
    assert np.array_equal(back.values, series.values)
    assert np.array_equal(back.adjacency, series.adjacency)
    assert back.sensor_ids == H5_IDS
    assert np.array_equal(back.timestamps, series.timestamps)
    assert np.array_equal(back.coordinates, series.coordinates)
    assert back.interval_minutes == 5 and back.files == [out]


def test_npz_mask_zeroes_unobserved_readings_and_int_timestamps(tmp_path):
    values = np.array([[1.0, np.nan], [3.0, 4.0], [5.0, 6.0]])
    path = tmp_path / "own.npz"
    np.savez(
        path,
        values=values,
        adjacency=np.eye(2),
        mask=np.array([[True, False], [False, True], [True, True]]),
        timestamps=np.array([0, 900, 1800], dtype=np.int64),
        sensor_ids=np.array([17, 4]),
    )
    series = read_npz(path)
    assert series.values[..., 0].tolist() == [[1, 0], [0, 4], [5, 6]]
    assert series.sensor_ids == ["17", "4"] and series.interval_minutes == 15
    assert series.timestamps[1] == np.datetime64("1970-01-01T00:15", "ns")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"values": [[1.0, np.inf]], "adjacency": np.eye(2)}, "own.npz: values[0, 1, 0] is inf"),
        (
            {"values": np.ones((2, 3)), "adjacency": np.eye(2)},
            "own.npz: adjacency is 2×2, expected 3×3",
        ),
        ({"values": np.ones((2, 2)), "adjacency": np.ones((2, 3))}, "adjacency has shape (2, 3)"),
        ({"values": np.ones((2, 2)), "adjacency": -np.eye(2)}, "adjacency[0, 0] = -1 is negative"),
        ({"values": np.ones((2, 2))}, "own.npz: no array 'adjacency'"),
        (
            {"values": np.ones((2, 2)), "adjacency": np.eye(2), "speed": [1]},
            "unknown array(s) 'speed'",
        ),
        (
            {"values": np.ones((2, 2)), "adjacency": np.eye(2), "sensor_ids": ["a"]},
            "sensor_ids has shape (1,), expected [2]",
        ),
        (
            {"values": np.ones((2, 2)), "adjacency": np.eye(2), "mask": np.ones((2, 3), bool)},
            "mask has shape (2, 3)",
        ),
        (
            {"values": np.ones((2, 2)), "adjacency": np.eye(2), "timestamps": [5, 5]},
            "timestamps[1]: timestamp",
        ),
        (
            {"values": np.array([["a", "b"]]), "adjacency": np.eye(2)},
            "values has dtype <U1, expected numbers",
        ),
    ],
)
def test_bad_npz(tmp_path, arrays, message):
    path = tmp_path / "own.npz"
    np.savez(path, **{key: np.asarray(value) for key, value in arrays.items()})
    with pytest.raises(InputError) as error:
        read_npz(path)
    assert message in str(error.value)


def test_npz_that_is_not_an_archive(tmp_path):
    with pytest.raises(InputError, match=r"own\.npz: not an \.npz archive"):
        read_npz(write(tmp_path, "own.npz", "values,adjacency\n"))
    np.save(tmp_path / "one.npy", np.ones(3))
    with pytest.raises(InputError, match=r"one\.npy: not an \.npz archive"):
        read_npz(tmp_path / "one.npy")


# --- prediction windows --------------------------------------------------------------------------


MODEL_IDS = ["a", "b", "c"]


def test_csv_windows_reorder_columns_and_slide(tmp_path):
    # columns b, a, c; row t holds 10t + 1 for a, 10t + 2 for b, 10t + 3 for c
    path = write(tmp_path, "recent.csv", "b,a,c\n2,1,3\n12,11,13\n22,21,23\n32,31,33\n")
    x, y = read_windows(path, MODEL_IDS, history=2, channels=1)
    assert y is None and x.dtype == np.float32 and x.shape == (3, 2, 3, 1)
    assert x[0, :, :, 0].tolist() == [[1, 2, 3], [11, 12, 13]]
    assert x[2, :, :, 0].tolist() == [[21, 22, 23], [31, 32, 33]]


@pytest.mark.parametrize(
    ("text", "history", "channels", "message"),
    [
        ("a,b,d\n1,2,3\n", 1, 1, "recent.csv: the header row lacks 1 of the model's sensors: 'c'"),
        ("a,b,c,e\n1,2,3,4\n", 1, 1, "has 1 sensors the model does not know: 'e'"),
        ("a,b,c\n1,2,3\n", 2, 1, "recent.csv: 1 rows of readings, need at least 2"),
        ("a,b,c\n1,2,3\n", 1, 2, "recent.csv: a CSV holds one reading per sensor and step"),
        ("a,b,c\n1,2,3\n4,5,x\n", 1, 1, "recent.csv:3: column 3 ('c'): 'x' is not a number"),
    ],
)
def test_bad_csv_windows(tmp_path, text, history, channels, message):
    with pytest.raises(InputError) as error:
        read_windows(write(tmp_path, "recent.csv", text), MODEL_IDS, history, channels)
    assert message in str(error.value)


def test_npz_windows_with_targets_and_sensor_order(tmp_path):
    x = np.arange(2 * 4 * 3, dtype=np.float64).reshape(2, 4, 3)  # [S, history, N], C = 1
    y = np.arange(2 * 5 * 3, dtype=np.float64).reshape(2, 5, 3, 1) + 100
    path = tmp_path / "windows.npz"
    np.savez(path, x=x, y=y, sensor_ids=np.array(["c", "a", "b"]), x_offsets=np.arange(4))
    got_x, got_y = read_windows(path, MODEL_IDS, history=4, channels=1)
    assert got_x.shape == (2, 4, 3, 1) and got_y.shape == (2, 5, 3)
    assert got_x[0, 0, :, 0].tolist() == [1, 2, 0]  # file order c, a, b → model order a, b, c
    assert got_y[1, 4].tolist() == [y[1, 4, 1, 0], y[1, 4, 2, 0], y[1, 4, 0, 0]]
    np.savez(path, x=x)
    assert read_windows(path, MODEL_IDS, history=4, channels=1)[1] is None


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.ones((2, 3, 3, 1))}, "x has shape (2, 3, 3, 1), expected [S, 4, 3, 1]"),
        ({"x": np.ones((2, 4, 2))}, "x has shape (2, 4, 2), expected [S, 4, 3, 1]"),
        (
            {"x": np.ones((2, 4, 3)), "y": np.ones((3, 5, 3))},
            "y has shape (3, 5, 3), expected [2, horizon, 3]",
        ),
        ({"x": np.ones((2, 4, 3)), "y": np.ones((2, 5, 3, 2))}, "y has shape (2, 5, 3, 2)"),
        ({"x": np.full((2, 4, 3), np.nan)}, "windows.npz: x[0, 0, 0, 0] is nan"),
        (
            {"x": np.ones((2, 4, 3)), "sensor_ids": np.array(["a", "b", "z"])},
            "sensor_ids lacks 1 of the model's sensors: 'c'",
        ),
        ({"x": np.ones((2, 4, 3)), "extra": np.ones(1)}, "unknown array(s) 'extra'"),
        ({"y": np.ones((2, 5, 3))}, "no array 'x'"),
    ],
)
def test_bad_npz_windows(tmp_path, arrays, message):
    path = tmp_path / "windows.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError) as error:
        read_windows(path, MODEL_IDS, history=4, channels=1)
    assert message in str(error.value)


def test_windows_file_kinds(tmp_path):
    with pytest.raises(InputError, match=r"w\.txt: windows are read from \.npz or \.csv"):
        read_windows(write(tmp_path, "w.txt", "1"), MODEL_IDS, 1, 1)
    with pytest.raises(InputError, match=r"gone\.npz: no such file"):
        read_windows(tmp_path / "gone.npz", MODEL_IDS, 1, 1)
