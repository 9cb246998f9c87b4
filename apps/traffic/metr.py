"""METR-LA / PEMS-BAY as DCRNN released them (:func:`read_metr`): a pandas ``.h5`` frame (index =
timestamps, columns = sensor IDs, values = speed in mph), the Python 2 pickle ``adj_mx*.pkl``
``[sensor_ids, sensor_id_to_ind, adj_mx]``, and optionally ``graph_sensor_locations*.csv``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from apps.traffic.checks import (
    as_numbers,
    check_increasing,
    check_unique,
    check_weights,
    interval_from_timestamps,
    listing,
)
from apps.traffic.csvfiles import csv_rows, is_number
from apps.traffic.series import TrafficSeries
from core.train.errors import InputError, input_file


def read_metr(
    values_file: str | Path,
    graph_file: str | Path,
    locations_file: str | Path | None = None,
    *,
    key: str | None = None,
) -> TrafficSeries:
    """METR-LA / PEMS-BAY as DCRNN released them: the ``.h5`` speeds [T, N, 1] with their
    timestamps, ``adj_mx*.pkl`` aligned to the ``.h5`` column order by sensor ID (a graph may hold
    more sensors than the readings; every sensor with readings must be in it), and optionally
    ``graph_sensor_locations*.csv`` for (latitude, longitude). ``key``: the HDF5 key, needed only
    when the file holds several frames and none is called ``df`` or ``speed``."""
    values_path = input_file(values_file, "the METR-LA/PEMS-BAY .h5 readings")
    graph_path = input_file(graph_file, "the DCRNN adjacency pickle (adj_mx.pkl)")
    sensor_ids, speeds, stamps = read_h5_speeds(values_path, key)
    graph_ids, matrix = read_adjacency_pickle(graph_path)
    order = _positions(sensor_ids, graph_ids, values_path, graph_path)
    files = [values_path, graph_path]
    coordinates = None
    if locations_file is not None:
        locations_path = input_file(locations_file, "the sensor locations CSV")
        located_ids, places = read_locations(locations_path)
        coordinates = places[_positions(sensor_ids, located_ids, values_path, locations_path)]
        files.append(locations_path)
    return TrafficSeries(
        values=speeds[:, :, None].astype(np.float32),
        adjacency=matrix[np.ix_(order, order)].astype(np.float32),
        sensor_ids=sensor_ids,
        interval_minutes=interval_from_timestamps(stamps, values_path),
        timestamps=stamps,
        coordinates=coordinates,
        files=files,
    )


def _positions(
    wanted: list[str], have: list[str], wanted_from: Path, have_from: Path
) -> np.ndarray:
    """Where each sensor of ``wanted`` (the readings' columns) sits in ``have``; every one must."""
    position = {sensor: index for index, sensor in enumerate(have)}
    missing = [sensor for sensor in wanted if sensor not in position]
    if missing:
        column = wanted.index(missing[0]) + 1
        raise InputError(
            f"{have_from}: has no sensor {missing[0]!r} (column {column} of {wanted_from}); "
            f"{len(missing)} of its {len(wanted)} sensors are not there: {listing(missing)}"
        )
    return np.array([position[sensor] for sensor in wanted], dtype=np.int64)


def read_h5_speeds(
    path: str | Path, key: str | None = None
) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """A pandas ``.h5`` frame → (sensor IDs [N] as str, readings [T, N] float64, timestamps [T]
    ``datetime64[ns]``, or None for a plain 0..T-1 index)."""
    import pandas as pd

    path = input_file(path, "the METR-LA/PEMS-BAY .h5 readings")
    frame = _h5_frame(path, key)
    if not isinstance(frame, pd.DataFrame):
        raise InputError(
            f"{path}: holds a {type(frame).__name__}, expected a DataFrame (one column per sensor)"
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError(f"{path}: the frame is {frame.shape[0]}×{frame.shape[1]}, expected data")
    sensor_ids = [str(column).strip() for column in frame.columns]
    check_unique(sensor_ids, lambda i: f"{path}: column {i + 1}")
    for index, dtype in enumerate(frame.dtypes):
        if not pd.api.types.is_numeric_dtype(dtype):
            raise InputError(
                f"{path}: column {index + 1} ({sensor_ids[index]!r}) holds {dtype}, expected numbers"
            )
    values = frame.to_numpy(dtype=np.float64)
    stamps = _h5_timestamps(frame.index, path)
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        row, column = bad[0]
        raise InputError(
            f"{path}: row {row + 1} ({frame.index[row]}), column {column + 1} "
            f"({sensor_ids[column]!r}): {values[row, column]} is not a finite number (a missing "
            "reading is written as 0)"
        )
    return sensor_ids, values, stamps


def _h5_frame(path: Path, key: str | None) -> Any:
    """The one frame of a pandas HDF5 file: ``key``, the only one, or the one called df/speed."""
    import pandas as pd

    try:
        with pd.HDFStore(path, mode="r") as store:
            return store.get(_h5_key(path, [name.lstrip("/") for name in store], key))
    except InputError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as error:
        lines = str(error).strip().splitlines() or [type(error).__name__]
        raise InputError(f"{path}: not a readable pandas HDF5 file ({lines[-1]})") from None


def _h5_key(path: Path, keys: list[str], key: str | None) -> str:
    """Which frame of an HDF5 file to read: ``key`` if given, else the only one, else df/speed."""
    if key is not None:
        if key.lstrip("/") not in keys:
            raise InputError(f"{path}: no frame {key!r}; the file has {listing(keys) or 'none'}")
        return key.lstrip("/")
    if len(keys) == 1:
        return keys[0]
    for name in ("df", "speed"):
        if name in keys:
            return name
    raise InputError(
        f"{path}: {len(keys)} pandas frames ({listing(keys) or 'none'}); expected one, or one "
        "called 'df' or 'speed' (or name it with key=...)"
    )


def _h5_timestamps(index: Any, path: Path) -> np.ndarray | None:
    """A frame's index → timestamps [T] ``datetime64[ns]`` (time-zone aware ones in UTC), or None
    for the plain 0..T-1 index of a frame saved without times."""
    import pandas as pd

    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        return None
    if not isinstance(index, pd.DatetimeIndex):
        raise InputError(f"{path}: the frame's index holds {index.dtype}, expected timestamps")
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    stamps = index.to_numpy().astype("datetime64[ns]")
    check_increasing(stamps, path, lambda i: f"row {i + 1}")
    return stamps


def read_adjacency_pickle(path: str | Path) -> tuple[list[str], np.ndarray]:
    """DCRNN's ``adj_mx*.pkl`` (``[sensor_ids, sensor_id_to_ind, adj_mx]``, pickled by Python 2) →
    (sensor IDs in matrix order, adjacency [N, N] float64, directed, diagonal 1 in DCRNN's files).
    Unpickling can run code named in the file: read only files you trust."""
    path = input_file(path, "the DCRNN adjacency pickle (adj_mx.pkl)")
    try:
        with path.open("rb") as handle:
            content = pickle.load(handle, encoding="latin1")
    except Exception as error:  # unpickling fails in many ways, each meaning "not such a pickle"
        raise InputError(
            f"{path}: not a readable pickle ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(content, list | tuple) or len(content) != 3:
        raise InputError(
            f"{path}: holds a {type(content).__name__}, expected the list "
            "[sensor_ids, sensor_id_to_ind, adj_mx]"
        )
    raw_ids, mapping, raw_matrix = content
    if not isinstance(raw_ids, list | tuple | np.ndarray):
        raise InputError(f"{path}: sensor_ids is a {type(raw_ids).__name__}, expected a list")
    if not isinstance(mapping, dict):
        raise InputError(f"{path}: sensor_id_to_ind is a {type(mapping).__name__}, expected a dict")
    sensor_ids = [_text(sensor) for sensor in raw_ids]
    check_unique(sensor_ids, lambda i: f"{path}: sensor_ids[{i}]")
    index_of = {_text(sensor): index for sensor, index in mapping.items()}
    for index, sensor in enumerate(sensor_ids):
        if index_of.get(sensor) != index:
            raise InputError(
                f"{path}: sensor_id_to_ind[{sensor!r}] is {index_of.get(sensor)}, but {sensor!r} "
                f"is entry {index} of sensor_ids"
            )
    if len(index_of) != len(sensor_ids):
        raise InputError(
            f"{path}: sensor_id_to_ind has {len(index_of)} entries for {len(sensor_ids)} sensor_ids"
        )
    matrix = as_numbers(np.asarray(raw_matrix), path, "adj_mx", "[N, N]")
    check_weights(matrix, path, "adj_mx", len(sensor_ids), "its sensor_ids")
    return sensor_ids, matrix


def _text(value: Any) -> str:
    """A sensor ID from a pickle (str, bytes or a number) as a stripped ``str``."""
    if isinstance(value, bytes):
        value = value.decode("latin1")
    return str(value).strip()


def read_locations(path: str | Path) -> tuple[list[str], np.ndarray]:
    """``graph_sensor_locations*.csv`` → (sensor IDs [M], (latitude, longitude) [M, 2] float64).
    With a header (METR-LA's ``index,sensor_id,latitude,longitude``) the columns are found by name;
    without one (PEMS-BAY's file) the rows are ``sensor_id,latitude,longitude``, or the same after an
    index column."""
    path = input_file(path, "the sensor locations CSV")
    rows = list(csv_rows(path))
    if not rows:
        raise InputError(f"{path}: no rows, expected sensor_id,latitude,longitude")
    line, cells = rows[0]
    names = [cell.strip().lower() for cell in cells]
    if all(is_number(cell) for cell in cells):
        columns = {3: [0, 1, 2], 4: [1, 2, 3]}.get(len(cells))
        if columns is None:
            raise InputError(
                f"{path}:{line}: row has {len(cells)} cells, expected 3 (sensor_id, latitude, "
                "longitude) or 4 (index first), or a header naming them"
            )
        width, why = len(cells), f"as on line {line}"
    else:
        missing = [name for name in ("sensor_id", "latitude", "longitude") if name not in names]
        if missing:
            raise InputError(f"{path}:{line}: the header lacks {listing(missing)}")
        columns = [names.index(name) for name in ("sensor_id", "latitude", "longitude")]
        width, why, rows = len(cells), "as in the header", rows[1:]
    sensor_ids, places, lines = [], [], []
    for line, cells in rows:
        if len(cells) != width:
            raise InputError(f"{path}:{line}: row has {len(cells)} cells, expected {width} ({why})")
        sensor_ids.append(cells[columns[0]].strip())
        places.append([_coordinate(path, line, cells, columns[1], "latitude", 90)])
        places[-1].append(_coordinate(path, line, cells, columns[2], "longitude", 180))
        lines.append(line)
    if not sensor_ids:
        raise InputError(f"{path}: no rows after the header")
    check_unique(sensor_ids, lambda i: f"{path}:{lines[i]}")
    return sensor_ids, np.array(places, dtype=np.float64)


def _coordinate(
    path: Path, line: int, cells: list[str], index: int, name: str, limit: float
) -> float:
    """Cell ``index`` of a locations row as a latitude or longitude, within ±``limit`` degrees."""
    cell = cells[index].strip()
    if not is_number(cell) or not np.isfinite(float(cell)):
        raise InputError(
            f"{path}:{line}: column {index + 1} ({name}): {cell!r} is not a finite number"
        )
    value = float(cell)
    if abs(value) > limit:
        raise InputError(
            f"{path}:{line}: column {index + 1} ({name}): {value:g} is outside -{limit}..{limit}"
        )
    return value
