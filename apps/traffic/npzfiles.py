"""Our own ``.npz`` traffic format (:func:`read_npz` / :func:`write_npz`) and the prediction window
files (:func:`read_windows`: an ``.npz`` of windows, or a T-GCN-style CSV cut into windows).

The traffic ``.npz`` (keys :data:`NPZ_KEYS`, nothing else): ``values`` [T, N, C] (or [T, N]) numbers
and ``adjacency`` [N, N] (``adjacency[i, j]`` = edge i → j), both required; optional ``mask`` [T, N]
bool (True = observed), ``timestamps`` [T] (datetime64, or int64 unix seconds), ``sensor_ids`` [N]
(strings or integers), ``coordinates`` [N, 2] and ``interval_minutes`` (one whole number). Archives
are read without unpickling anything; unknown arrays are refused, so a mistyped key is an error
rather than data silently left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from apps.traffic.checks import (
    as_numbers,
    check_finite,
    check_increasing,
    check_unique,
    check_weights,
    interval_from_timestamps,
    listing,
    positive,
)
from apps.traffic.csvfiles import numeric_csv
from apps.traffic.series import TrafficSeries
from core.train.errors import InputError, input_file

NPZ_KEYS = (
    "values",
    "adjacency",
    "mask",
    "timestamps",
    "sensor_ids",
    "coordinates",
    "interval_minutes",
)
WINDOW_KEYS = ("x", "y", "sensor_ids", "x_offsets", "y_offsets")

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # how a zip archive (an .npz) starts, or an empty one


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` archive, without unpickling anything."""
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic not in _ZIP_MAGIC:
        raise InputError(f"{path}: not an .npz archive (a zip of named .npy arrays)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise InputError(f"{path}: not a readable .npz archive ({error})") from None
    arrays = {}
    with archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except ValueError:  # object arrays need pickle
                raise InputError(
                    f"{path}: array {key!r} holds Python objects; store numbers, or strings as "
                    "np.array(..., dtype=str)"
                ) from None
            except (OSError, EOFError) as error:
                raise InputError(f"{path}: array {key!r} is unreadable ({error})") from None
    if not arrays:
        raise InputError(f"{path}: the archive holds no arrays")
    return arrays


def _ids(array: np.ndarray, path: Path, key: str, count: int) -> list[str]:
    """Sensor IDs [N] (strings or integers) as ``str``, none empty or repeated."""
    if array.shape != (count,):
        raise InputError(f"{path}: {key} has shape {array.shape}, expected [{count}]")
    if array.dtype.kind == "S":
        ids = [item.decode("utf-8", "replace").strip() for item in array]
    elif array.dtype.kind in "Uiu":
        ids = [str(item).strip() for item in array]
    else:
        raise InputError(f"{path}: {key} has dtype {array.dtype}, expected strings or integers")
    check_unique(ids, lambda i: f"{path}: {key}[{i}]")
    return ids


def _timestamps(array: np.ndarray, path: Path, key: str, steps: int) -> np.ndarray:
    """Timestamps [T] (``datetime64`` of any unit, or integer unix seconds) → ``datetime64[ns]``."""
    if array.shape != (steps,):
        raise InputError(f"{path}: {key} has shape {array.shape}, expected [{steps}]")
    if np.issubdtype(array.dtype, np.datetime64):
        stamps = array.astype("datetime64[ns]")
    elif np.issubdtype(array.dtype, np.integer):
        stamps = array.astype("datetime64[s]").astype("datetime64[ns]")
    else:
        raise InputError(
            f"{path}: {key} has dtype {array.dtype}, expected datetime64 or int64 unix seconds"
        )
    check_increasing(stamps, path, lambda i: f"{key}[{i}]")
    return stamps


# --- our own npz ---------------------------------------------------------------------------------


def read_npz(path: str | Path) -> TrafficSeries:
    """Our ``.npz``: ``values`` [T, N, C] or [T, N], ``adjacency`` [N, N]; optional ``mask`` [T, N]
    (True = observed; readings where it is False are set to 0 — the rest of the app takes 0 as
    missing — so they may hold anything, NaN included), ``timestamps`` [T] (datetime64, or int64
    unix seconds), ``sensor_ids`` [N] (default "0".."N-1"), ``coordinates`` [N, 2] and
    ``interval_minutes`` (default: the timestamps' step, else 5). Other keys are refused."""
    path = input_file(path, "the traffic .npz")
    arrays = load_npz(path)
    unknown = sorted(set(arrays) - set(NPZ_KEYS))
    if unknown:
        raise InputError(
            f"{path}: unknown array(s) {listing(unknown)}; expected {', '.join(NPZ_KEYS)}"
        )
    for key in ("values", "adjacency"):
        if key not in arrays:
            raise InputError(f"{path}: no array {key!r}; it has {listing(list(arrays))}")
    values = as_numbers(arrays["values"], path, "values", "[T, N, C]")
    if values.ndim == 2:
        values = values[:, :, None]
    if values.ndim != 3 or 0 in values.shape:
        raise InputError(f"{path}: values has shape {arrays['values'].shape}, expected [T, N, C]")
    steps, sensors, _ = values.shape
    if "mask" in arrays:
        values[~_mask(arrays["mask"], path, (steps, sensors))] = 0.0
    check_finite(values, path, "values")
    adjacency = as_numbers(arrays["adjacency"], path, "adjacency", "[N, N]")
    check_weights(adjacency, path, "adjacency", sensors, "values")
    sensor_ids = [str(i) for i in range(sensors)]
    if "sensor_ids" in arrays:
        sensor_ids = _ids(arrays["sensor_ids"], path, "sensor_ids", sensors)
    stamps = None
    if "timestamps" in arrays:
        stamps = _timestamps(arrays["timestamps"], path, "timestamps", steps)
    coordinates = None
    if "coordinates" in arrays:
        coordinates = as_numbers(arrays["coordinates"], path, "coordinates", f"[{sensors}, 2]")
        if coordinates.shape != (sensors, 2):
            raise InputError(
                f"{path}: coordinates has shape {coordinates.shape}, expected [{sensors}, 2]"
            )
        check_finite(coordinates, path, "coordinates", readings=False)
    interval = interval_from_timestamps(stamps, path)
    if "interval_minutes" in arrays:
        interval = _npz_interval(arrays["interval_minutes"], path)
    return TrafficSeries(
        values=values.astype(np.float32),
        adjacency=adjacency.astype(np.float32),
        sensor_ids=sensor_ids,
        interval_minutes=interval,
        timestamps=stamps,
        coordinates=coordinates,
        files=[path],
    )


def _mask(array: np.ndarray, path: Path, shape: tuple[int, int]) -> np.ndarray:
    """The observed-mask [T, N]: booleans, or integers 0/1."""
    if array.shape != shape:
        raise InputError(f"{path}: mask has shape {array.shape}, expected [{shape[0]}, {shape[1]}]")
    if array.dtype == bool:
        return array
    if not np.issubdtype(array.dtype, np.integer) or not np.isin(array, (0, 1)).all():
        raise InputError(f"{path}: mask must be booleans (or 0/1), got dtype {array.dtype}")
    return array.astype(bool)


def _npz_interval(array: np.ndarray, path: Path) -> int:
    if array.shape != () or not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{path}: interval_minutes must be one number, got shape {array.shape}")
    value = array.item()
    if value != int(value) or value < 1:
        raise InputError(f"{path}: interval_minutes is {value}, expected a positive whole number")
    return int(value)


def write_npz(series: TrafficSeries, path: str | Path) -> Path:
    """Write ``series`` in the format :func:`read_npz` reads (compressed; no mask: a missing
    reading is already 0), to exactly ``path``. Returns the path."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "values": np.asarray(series.values, dtype=np.float32),
        "adjacency": np.asarray(series.adjacency, dtype=np.float32),
        "sensor_ids": np.array(series.sensor_ids, dtype=str),
        "interval_minutes": np.array(series.interval_minutes, dtype=np.int64),
    }
    if series.timestamps is not None:
        arrays["timestamps"] = np.asarray(series.timestamps).astype("datetime64[ns]")
    if series.coordinates is not None:
        arrays["coordinates"] = np.asarray(series.coordinates, dtype=np.float64)
    with path.open("wb") as handle:  # a handle, so numpy does not append ".npz" to the name
        np.savez_compressed(handle, **arrays)
    return path


# --- prediction windows --------------------------------------------------------------------------


def read_windows(
    path: str | Path, sensor_ids: list[str], history: int, channels: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Windows to predict on: inputs x [S, history, N, C] float32 and targets y [S, horizon, N]
    float32 (None when the file has none), columns in the order of ``sensor_ids`` (the model's).

    * ``.npz``: ``x`` [S, history, N, C] (or [S, history, N] when C = 1), optional ``y``
      [S, horizon, N] (or [..., 1]) and ``sensor_ids`` [N] (any order of the model's IDs).
      DCRNN's ``x_offsets`` / ``y_offsets`` are allowed and not used.
    * ``.csv`` (the T-GCN layout: a header row of sensor IDs, a row a step, at least ``history``
      rows; C must be 1): every ``history`` consecutive rows are one input (S = rows - history + 1).
    """
    path = input_file(path, "the prediction windows (.npz or .csv)")
    positive(history, "history")
    positive(channels, "channels")
    if not sensor_ids:
        raise InputError("no sensor IDs to match the windows against")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _npz_windows(path, list(sensor_ids), history, channels)
    if suffix == ".csv":
        return _csv_windows(path, list(sensor_ids), history, channels), None
    raise InputError(
        f"{path}: windows are read from .npz or .csv files, got {suffix or 'no suffix'!r}"
    )


def _column_order(found: list[str], wanted: list[str], where: str) -> np.ndarray:
    """Where each of the model's sensors ``wanted`` is in a file's ``found``: the sets must match."""
    found_set, wanted_set = set(found), set(wanted)
    missing = [sensor for sensor in wanted if sensor not in found_set]
    extra = [sensor for sensor in found if sensor not in wanted_set]
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"lacks {len(missing)} of the model's sensors: {listing(missing)}")
        if extra:
            problems.append(f"has {len(extra)} sensors the model does not know: {listing(extra)}")
        raise InputError(f"{where} " + "; ".join(problems))
    position = {sensor: index for index, sensor in enumerate(found)}
    return np.array([position[sensor] for sensor in wanted], dtype=np.int64)


def _csv_windows(path: Path, sensor_ids: list[str], history: int, channels: int) -> np.ndarray:
    """A T-GCN-style CSV → every window of ``history`` rows, x [S, history, N, 1]."""
    if channels != 1:
        raise InputError(
            f"{path}: a CSV holds one reading per sensor and step, but the model takes {channels} "
            "channels; give an .npz with x [S, history, N, C]"
        )
    found, readings = numeric_csv(path, header=True)
    assert found is not None
    readings = readings[:, _column_order(found, sensor_ids, f"{path}: the header row")]
    if len(readings) < history:
        raise InputError(f"{path}: {len(readings)} rows of readings, need at least {history}")
    windows = np.lib.stride_tricks.sliding_window_view(readings, history, axis=0)  # [S, N, H]
    return np.ascontiguousarray(windows.transpose(0, 2, 1)[..., None], dtype=np.float32)


def _npz_windows(
    path: Path, sensor_ids: list[str], history: int, channels: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """An ``.npz`` of windows → (x [S, history, N, C], y [S, horizon, N] or None)."""
    arrays = load_npz(path)
    unknown = sorted(set(arrays) - set(WINDOW_KEYS))
    if unknown:
        raise InputError(f"{path}: unknown array(s) {listing(unknown)}; expected x, y, sensor_ids")
    if "x" not in arrays:
        raise InputError(f"{path}: no array 'x' [S, history, N, C]; it has {listing(list(arrays))}")
    sensors = len(sensor_ids)
    x = as_numbers(arrays["x"], path, "x", "[S, history, N, C]")
    if x.ndim == 3:
        x = x[..., None]
    expected = f"[S, {history}, {sensors}, {channels}]"
    if x.ndim != 4 or x.shape[1:] != (history, sensors, channels) or len(x) == 0:
        raise InputError(
            f"{path}: x has shape {arrays['x'].shape}, expected {expected} (history {history}, "
            f"{sensors} sensors, {channels} channel(s))"
        )
    check_finite(x, path, "x")
    y = None
    if "y" in arrays:
        y = as_numbers(arrays["y"], path, "y", "[S, horizon, N]")
        if y.ndim == 4 and y.shape[3] == 1:
            y = y[..., 0]
        if y.ndim != 3 or y.shape[0] != len(x) or y.shape[2] != sensors or y.shape[1] == 0:
            raise InputError(
                f"{path}: y has shape {arrays['y'].shape}, expected [{len(x)}, horizon, {sensors}] "
                "(one target channel)"
            )
        check_finite(y, path, "y")
    if "sensor_ids" in arrays:
        found = _ids(arrays["sensor_ids"], path, "sensor_ids", sensors)
        order = _column_order(found, sensor_ids, f"{path}: sensor_ids")
        x = x[:, :, order]
        y = None if y is None else y[:, :, order]
    return x.astype(np.float32), None if y is None else y.astype(np.float32)
