"""Readers for the public traffic-forecasting files, each returning a :class:`TrafficSeries`.

* METR-LA / PEMS-BAY (DCRNN), :func:`read_metr`: a pandas ``.h5`` frame (index = timestamps,
  columns = sensor IDs, values = speed in mph), the Python 2 pickle ``adj_mx*.pkl``
  ``[sensor_ids, sensor_id_to_ind, adj_mx]``, and optionally ``graph_sensor_locations*.csv``.
* PeMSD7(M) (STGCN), :func:`read_pemsd7`: ``V_228.csv`` readings [T, N] and ``W_228.csv`` road
  distances [N, N] in metres (no headers), turned into weights as STGCN does (:func:`stgcn_weights`).
* T-GCN, :func:`read_tgcn`: ``los_speed.csv`` / ``sz_speed.csv`` (a header row of sensor IDs, then
  one row a time step) and ``los_adj.csv`` / ``sz_adj.csv`` (no header, weights [N, N]).
* PEMS03/04/07/08 (ASTGCN, STSGCN), :func:`read_pems`: ``PEMS04.npz`` with ``data`` [T, N, F] and the
  edge list ``PEMS04.csv`` (``from,to,cost``; PEMS03 names sensors by ID, in ``PEMS03.txt`` order).
* Our own ``.npz``, :func:`read_npz` / :func:`write_npz`: what every converter writes, so converting
  is ``write_npz(read_series(format, values, graph), out)`` (:func:`read_series` picks the reader).
* Prediction windows for ``predict`` on a user's own data, :func:`read_windows`: an ``.npz`` with
  ``x`` (and maybe ``y``), or a T-GCN-style CSV cut into every run of ``history`` rows.

Bad input raises ``InputError`` (a ``ValueError``) naming the file, the line (or row) and column,
1-based as an editor shows them (array indices in ``.npz`` files are 0-based, as numpy prints them),
and what was expected. Nothing is dropped: blank CSV lines hold no data and are skipped, every other
bad cell is an error. NaN and infinite readings are refused: the public files mark a missing reading
by 0, and so does the rest of the app.
"""

from __future__ import annotations

import csv
import inspect
import io
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from apps.traffic.series import TrafficSeries
from core.train.errors import InputError

FORMATS = ("metr", "pemsd7", "tgcn", "pems", "npz")
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

_BLOCK_ROWS = 4096  # rows parsed at a time by the careful CSV loop
_SHOW = 5  # how many offending names a message lists
_FAST_FROM_BYTES = 8 << 20  # CSVs this big are first tried with pandas (see _fast_numeric_csv)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # how a zip archive (an .npz) starts, or an empty one
_NUMERIC_BYTES = b'0123456789.eE+-, \t\r\n"'  # the only bytes a clean CSV of numbers holds


# --- files and messages --------------------------------------------------------------------------


def _file(path: str | Path, what: str) -> Path:
    """``path`` as a Path, refusing a missing, non-regular or empty file (``what``: which file)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file (expected the {what})")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file (expected the {what})")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (expected the {what})")
    return path


def _listing(names: list[str]) -> str:
    """``'a', 'b', 'c' and 4 more``: the first few of a list of offending names."""
    shown = ", ".join(repr(name) for name in names[:_SHOW])
    return shown + (f" and {len(names) - _SHOW} more" if len(names) > _SHOW else "")


def _column(index: int, names: list[str] | None) -> str:
    """The 1-based column ``index`` (0-based) of a CSV, with its sensor ID when the header gave one."""
    return f"column {index + 1}" + (f" ({names[index]!r})" if names else "")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- CSV tables ----------------------------------------------------------------------------------


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each row of a CSV file; blank lines hold no data and are skipped.
    UTF-8, with or without the byte-order mark spreadsheet programs write."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            for cells in reader:
                if len(cells) > 1 or (cells and cells[0].strip()):
                    yield reader.line_num, cells
        except (csv.Error, UnicodeDecodeError) as error:
            raise InputError(
                f"{path}:{reader.line_num + 1}: not readable as CSV ({error})"
            ) from None


def _sensor_header(path: Path, line: int, cells: list[str]) -> list[str]:
    """Sensor IDs from a header row: none empty, none repeated, and not a row of readings."""
    ids = [cell.strip() for cell in cells]
    seen: dict[str, int] = {}
    for column, sensor in enumerate(ids, start=1):
        if not sensor:
            raise InputError(f"{path}:{line}: column {column}: empty sensor ID in the header")
        if sensor in seen:
            raise InputError(
                f"{path}:{line}: column {column}: sensor ID {sensor!r} repeats column {seen[sensor]}"
            )
        seen[sensor] = column
    if all(_is_number(s) for s in ids) and not all(s.lstrip("+-").isdigit() for s in ids):
        raise InputError(
            f"{path}:{line}: the first row looks like readings ({ids[0]!r}, …); expected a header "
            "row of sensor IDs"
        )
    return ids


def _numeric_csv(path: Path, *, header: bool) -> tuple[list[str] | None, np.ndarray]:
    """A CSV of numbers → (the header's sensor IDs or None, values [R, W] float64). Every row must
    have as many cells as the header (or the first row) and every cell must be a finite number."""
    rows = _csv_rows(path)
    width, why = None, ""
    try:
        names, skip = None, 0
        if header:
            first = next(rows, None)
            if first is None:
                raise InputError(f"{path}: no rows, expected a header row of sensor IDs")
            skip, cells = first
            names = _sensor_header(path, skip, cells)
            width, why = len(names), "one per sensor in the header"
        values = _fast_numeric_csv(path, skip, width)
        if values is None:
            values = _careful_numeric_csv(path, rows, width, why, names)
    finally:
        rows.close()
    return names, values


def _fast_numeric_csv(path: Path, skip: int, width: int | None) -> np.ndarray | None:
    """The table after the first ``skip`` lines, parsed by pandas' C reader when the file is big
    and clean, else None. Only speed (a 34k × 325 table: ~1 s instead of ~8 s): the careful loop
    stays the one judge of bad input and runs whenever this one has any doubt."""
    if path.stat().st_size < _FAST_FROM_BYTES:
        return None
    try:
        import pandas as pd
    except ImportError:
        return None
    text = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    parts = text.split(b"\n", skip)
    body = parts[skip] if len(parts) > skip else b""
    if body.translate(None, _NUMERIC_BYTES):  # letters (nan, inf, True…) or other odd bytes
        return None
    try:
        frame = pd.read_csv(io.BytesIO(body), header=None, dtype=np.float64)
    except (ValueError, OverflowError):  # a bad cell or row, or no rows at all
        return None
    values = frame.to_numpy(dtype=np.float64)
    if values.size == 0 or (width is not None and values.shape[1] != width):
        return None
    return values if np.isfinite(values).all() else None


def _careful_numeric_csv(
    path: Path,
    rows: Iterator[tuple[int, list[str]]],
    width: int | None,
    why: str,
    names: list[str] | None,
) -> np.ndarray:
    """Parse ``rows`` a block at a time, naming the line and column of the first ragged row,
    non-number or NaN/inf cell."""
    blocks: list[np.ndarray] = []
    block: list[list[str]] = []
    lines: list[int] = []
    for line, cells in rows:
        if width is None:
            width, why = len(cells), f"as on line {line}"
        if len(cells) != width:
            raise InputError(f"{path}:{line}: row has {len(cells)} cells, expected {width} ({why})")
        block.append(cells)
        lines.append(line)
        if len(block) == _BLOCK_ROWS:
            blocks.append(_parse_block(path, block, lines, names))
            block, lines = [], []
    if block:
        blocks.append(_parse_block(path, block, lines, names))
    if not blocks:
        raise InputError(f"{path}: no rows of numbers" + (" after the header" if names else ""))
    return np.concatenate(blocks)


def _parse_block(
    path: Path, block: list[list[str]], lines: list[int], names: list[str] | None
) -> np.ndarray:
    """Rows of equal length → [R, W] float64, or an error naming the first bad cell."""
    try:
        values = np.array(block, dtype=np.float64)
    except ValueError:
        for row, line in zip(block, lines, strict=True):
            for index, cell in enumerate(row):
                if not _is_number(cell):
                    what = "empty cell" if not cell.strip() else f"{cell.strip()!r} is not a number"
                    raise InputError(f"{path}:{line}: {_column(index, names)}: {what}") from None
        raise  # numpy refused a row Python accepts: a bug, not bad input
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        row, index = bad[0]
        raise InputError(
            f"{path}:{lines[row]}: {_column(index, names)}: {block[row][index].strip()!r} is not a "
            "finite number"
        )
    return values


def _line_of_row(path: Path, row: int) -> int:
    """The line number of row ``row`` (0-based) of a CSV, for messages about a parsed table."""
    for index, (line, _) in enumerate(_csv_rows(path)):
        if index == row:
            return line
    raise AssertionError(f"{path} has no data row {row}")


def _adjacency_csv(path: Path, num_sensors: int, readings: Path) -> np.ndarray:
    """An N×N weight matrix with no header → [N, N] float64; N = the sensors in ``readings``."""
    _, matrix = _numeric_csv(path, header=False)
    rows, columns = matrix.shape
    if rows != columns:
        raise InputError(f"{path}: {rows} rows of {columns} cells; an adjacency matrix is square")
    if rows != num_sensors:
        raise InputError(
            f"{path}: adjacency is {rows}×{rows}, expected {num_sensors}×{num_sensors} (one row and "
            f"column per sensor in {readings})"
        )
    negative = np.argwhere(matrix < 0)
    if len(negative):
        row, index = negative[0]
        raise InputError(
            f"{path}:{_line_of_row(path, row)}: column {index + 1}: weight "
            f"{matrix[row, index]:g} is negative (0 = no edge)"
        )
    return matrix


# --- arrays (npz, pickle, h5) --------------------------------------------------------------------


def _load_npz(path: Path) -> dict[str, np.ndarray]:
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


def _numbers(array: np.ndarray, path: Path, key: str, shapes: str) -> np.ndarray:
    """A numeric array (``shapes``: what was expected, for the message) as float64."""
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"{path}: {key} has dtype {array.dtype}, expected numbers {shapes}")
    return array.astype(np.float64)


def _check_finite(array: np.ndarray, path: Path, key: str, readings: bool = True) -> None:
    """Refuse NaN/inf, naming the 0-based index of the first one."""
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        index = tuple(int(i) for i in bad[0])
        where = ", ".join(str(i) for i in index)
        hint = " (a missing reading is written as 0)" if readings else ""
        raise InputError(
            f"{path}: {key}[{where}] is {array[index]}, expected a finite number{hint}"
        )


def _check_weights(matrix: np.ndarray, path: Path, key: str, num_sensors: int, source: str) -> None:
    """An [N, N] adjacency: square, N = ``num_sensors`` (from ``source``), finite, non-negative."""
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise InputError(f"{path}: {key} has shape {matrix.shape}; an adjacency matrix is [N, N]")
    if len(matrix) != num_sensors:
        raise InputError(
            f"{path}: {key} is {len(matrix)}×{len(matrix)}, expected {num_sensors}×{num_sensors} "
            f"(one row and column per sensor in {source})"
        )
    _check_finite(matrix, path, key, readings=False)
    negative = np.argwhere(matrix < 0)
    if len(negative):
        row, column = negative[0]
        raise InputError(
            f"{path}: {key}[{row}, {column}] = {matrix[row, column]:g} is negative (0 = no edge)"
        )


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
    _check_unique(ids, lambda i: f"{path}: {key}[{i}]")
    return ids


def _check_unique(ids: list[str], where: Callable[[int], str]) -> None:
    """Refuse an empty or repeated sensor ID; ``where(i)`` names entry ``i`` (0-based)."""
    first: dict[str, int] = {}
    for index, sensor in enumerate(ids):
        if not sensor:
            raise InputError(f"{where(index)}: empty sensor ID")
        if sensor in first:
            raise InputError(f"{where(index)}: sensor ID {sensor!r} repeats entry {first[sensor]}")
        first[sensor] = index


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
    _check_increasing(stamps, path, lambda i: f"{key}[{i}]")
    return stamps


def _check_increasing(stamps: np.ndarray, path: Path, label: Callable[[int], str]) -> None:
    """Refuse a missing timestamp (NaT) or one not after its predecessor; ``label(i)`` names
    timestamp ``i`` (0-based). Gaps are allowed: the file's own times are kept."""
    missing = np.flatnonzero(np.isnat(stamps))
    if len(missing):
        raise InputError(f"{path}: {label(int(missing[0]))}: missing timestamp (NaT)")
    backwards = np.flatnonzero(np.diff(stamps) <= np.timedelta64(0, "ns"))
    if len(backwards):
        i = int(backwards[0]) + 1
        raise InputError(
            f"{path}: {label(i)}: timestamp {stamps[i]} is not after the one before ({stamps[i - 1]})"
        )


def _interval_minutes(stamps: np.ndarray | None, path: Path, default: int = 5) -> int:
    """The most common step between timestamps in whole minutes (``default`` when unknown)."""
    if stamps is None or len(stamps) < 2:
        return default
    steps, counts = np.unique(
        np.diff(stamps).astype("timedelta64[s]").astype(np.int64), return_counts=True
    )
    seconds = int(steps[np.argmax(counts)])
    if seconds % 60:
        raise InputError(f"{path}: readings are {seconds} s apart, expected whole minutes")
    return seconds // 60


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
            f"{len(missing)} of its {len(wanted)} sensors are not there: {_listing(missing)}"
        )
    return np.array([position[sensor] for sensor in wanted], dtype=np.int64)


# --- METR-LA / PEMS-BAY --------------------------------------------------------------------------


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
    values_path = _file(values_file, "METR-LA/PEMS-BAY .h5 readings")
    graph_path = _file(graph_file, "DCRNN adjacency pickle (adj_mx.pkl)")
    sensor_ids, speeds, stamps = read_h5_speeds(values_path, key)
    graph_ids, matrix = read_adjacency_pickle(graph_path)
    order = _positions(sensor_ids, graph_ids, values_path, graph_path)
    files = [values_path, graph_path]
    coordinates = None
    if locations_file is not None:
        locations_path = _file(locations_file, "sensor locations CSV")
        located_ids, places = read_locations(locations_path)
        coordinates = places[_positions(sensor_ids, located_ids, values_path, locations_path)]
        files.append(locations_path)
    return TrafficSeries(
        values=speeds[:, :, None].astype(np.float32),
        adjacency=matrix[np.ix_(order, order)].astype(np.float32),
        sensor_ids=sensor_ids,
        interval_minutes=_interval_minutes(stamps, values_path),
        timestamps=stamps,
        coordinates=coordinates,
        files=files,
    )


def read_h5_speeds(
    path: str | Path, key: str | None = None
) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """A pandas ``.h5`` frame → (sensor IDs [N] as str, readings [T, N] float64, timestamps [T]
    ``datetime64[ns]``, or None for a plain 0..T-1 index)."""
    import pandas as pd

    path = _file(path, "METR-LA/PEMS-BAY .h5 readings")
    frame = _h5_frame(path, key)
    if not isinstance(frame, pd.DataFrame):
        raise InputError(
            f"{path}: holds a {type(frame).__name__}, expected a DataFrame (one column per sensor)"
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError(f"{path}: the frame is {frame.shape[0]}×{frame.shape[1]}, expected data")
    sensor_ids = [str(column).strip() for column in frame.columns]
    _check_unique(sensor_ids, lambda i: f"{path}: column {i + 1}")
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
            raise InputError(f"{path}: no frame {key!r}; the file has {_listing(keys) or 'none'}")
        return key.lstrip("/")
    if len(keys) == 1:
        return keys[0]
    for name in ("df", "speed"):
        if name in keys:
            return name
    raise InputError(
        f"{path}: {len(keys)} pandas frames ({_listing(keys) or 'none'}); expected one, or one "
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
    _check_increasing(stamps, path, lambda i: f"row {i + 1}")
    return stamps


def read_adjacency_pickle(path: str | Path) -> tuple[list[str], np.ndarray]:
    """DCRNN's ``adj_mx*.pkl`` (``[sensor_ids, sensor_id_to_ind, adj_mx]``, pickled by Python 2) →
    (sensor IDs in matrix order, adjacency [N, N] float64, directed, diagonal 1 in DCRNN's files).
    Unpickling can run code named in the file: read only files you trust."""
    path = _file(path, "DCRNN adjacency pickle (adj_mx.pkl)")
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
    _check_unique(sensor_ids, lambda i: f"{path}: sensor_ids[{i}]")
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
    matrix = _numbers(np.asarray(raw_matrix), path, "adj_mx", "[N, N]")
    _check_weights(matrix, path, "adj_mx", len(sensor_ids), "its sensor_ids")
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
    path = _file(path, "sensor locations CSV")
    rows = list(_csv_rows(path))
    if not rows:
        raise InputError(f"{path}: no rows, expected sensor_id,latitude,longitude")
    line, cells = rows[0]
    names = [cell.strip().lower() for cell in cells]
    if all(_is_number(cell) for cell in cells):
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
            raise InputError(f"{path}:{line}: the header lacks {_listing(missing)}")
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
    _check_unique(sensor_ids, lambda i: f"{path}:{lines[i]}")
    return sensor_ids, np.array(places, dtype=np.float64)


def _coordinate(
    path: Path, line: int, cells: list[str], index: int, name: str, limit: float
) -> float:
    """Cell ``index`` of a locations row as a latitude or longitude, within ±``limit`` degrees."""
    cell = cells[index].strip()
    if not _is_number(cell) or not np.isfinite(float(cell)):
        raise InputError(
            f"{path}:{line}: column {index + 1} ({name}): {cell!r} is not a finite number"
        )
    value = float(cell)
    if abs(value) > limit:
        raise InputError(
            f"{path}:{line}: column {index + 1} ({name}): {value:g} is outside -{limit}..{limit}"
        )
    return value


# --- PeMSD7(M) -----------------------------------------------------------------------------------


def stgcn_weights(distances: np.ndarray, sigma2: float = 0.1, epsilon: float = 0.5) -> np.ndarray:
    """Road distances in metres [N, N] → STGCN's edge weights [N, N]: with d = distance / 10000,
    w = exp(-d² / sigma2) where that is ≥ epsilon, else 0; no self-loops (zero diagonal)."""
    scaled = np.asarray(distances, dtype=np.float64) / 10000.0
    weights = np.exp(-(scaled**2) / sigma2)
    weights[weights < epsilon] = 0.0
    np.fill_diagonal(weights, 0.0)
    return weights


def read_pemsd7(
    values_file: str | Path,
    graph_file: str | Path,
    *,
    distances: bool = True,
    sigma2: float = 0.1,
    epsilon: float = 0.5,
    interval_minutes: int = 5,
) -> TrafficSeries:
    """PeMSD7(M) as STGCN released it: ``V_228.csv`` speeds (no header; a row a 5-minute step, a
    column a sensor) and ``W_228.csv`` [N, N]: road distances in metres turned into weights by
    :func:`stgcn_weights`, or (``distances=False``) weights used as they are. The files name no
    sensors, so the IDs are "0".."N-1"."""
    values_path = _file(values_file, "PeMSD7 readings CSV (V_228.csv)")
    graph_path = _file(graph_file, "PeMSD7 distance CSV (W_228.csv)")
    if sigma2 <= 0:
        raise InputError(f"sigma2 must be positive, got {sigma2}")
    _, speeds = _numeric_csv(values_path, header=False)
    matrix = _adjacency_csv(graph_path, speeds.shape[1], values_path)
    if distances:
        if matrix.size > 1 and np.isin(matrix, (0.0, 1.0)).all():
            raise InputError(
                f"{graph_path}: every entry is 0 or 1, so this is an adjacency, not distances in "
                "metres; read it with distances=False"
            )
        matrix = stgcn_weights(matrix, sigma2, epsilon)
    return TrafficSeries(
        values=speeds[:, :, None].astype(np.float32),
        adjacency=matrix.astype(np.float32),
        sensor_ids=[str(i) for i in range(speeds.shape[1])],
        interval_minutes=_positive(interval_minutes, "interval_minutes"),
        files=[values_path, graph_path],
    )


def _positive(value: int, name: str) -> int:
    if int(value) != value or value < 1:
        raise InputError(f"{name} must be a positive whole number, got {value}")
    return int(value)


# --- T-GCN ---------------------------------------------------------------------------------------


def read_tgcn(
    values_file: str | Path, graph_file: str | Path, *, interval_minutes: int | None = None
) -> TrafficSeries:
    """The T-GCN CSVs: ``*_speed.csv`` (a header row of sensor IDs, then a row a time step) →
    values [T, N, 1]; ``*_adj.csv`` (no header) → adjacency [N, N]. ``interval_minutes``: None
    means 15 for the Shenzhen files (``sz_*``) and 5 otherwise (Los Angeles)."""
    values_path = _file(values_file, "T-GCN speed CSV (los_speed.csv)")
    graph_path = _file(graph_file, "T-GCN adjacency CSV (los_adj.csv)")
    sensor_ids, speeds = _numeric_csv(values_path, header=True)
    assert sensor_ids is not None
    matrix = _adjacency_csv(graph_path, len(sensor_ids), values_path)
    if interval_minutes is None:
        interval_minutes = 15 if values_path.name.lower().startswith("sz_") else 5
    return TrafficSeries(
        values=speeds[:, :, None].astype(np.float32),
        adjacency=matrix.astype(np.float32),
        sensor_ids=sensor_ids,
        interval_minutes=_positive(interval_minutes, "interval_minutes"),
        files=[values_path, graph_path],
    )


# --- PEMS03/04/07/08 -----------------------------------------------------------------------------


def read_pems(
    values_file: str | Path,
    graph_file: str | Path,
    *,
    ids_file: str | Path | None = None,
    weights: Literal["binary", "distance"] = "binary",
    channels: list[int] | None = None,
    interval_minutes: int = 5,
) -> TrafficSeries:
    """PEMS03/04/07/08 as ASTGCN/STSGCN released them: ``PEMS0X.npz`` ``data`` [T, N, F] (F = 3:
    flow, occupancy, speed for 04/08; F = 1, flow, for 03/07), ``channels`` picking some of F (all by
    default), and the edge list ``PEMS0X.csv`` ``from,to,cost`` (directed, as the file lists it):
    A[from, to] = 1 (``weights="binary"``, as ASTGCN) or = cost (``"distance"``). The ends are
    sensor indices, or, with ``ids_file`` (``PEMS03.txt``, one ID a line in index order), sensor IDs;
    the IDs then name the sensors, else "0".."N-1"."""
    values_path = _file(values_file, "PEMS .npz readings")
    graph_path = _file(graph_file, "PEMS edge list CSV (from,to,cost)")
    if weights not in ("binary", "distance"):
        raise InputError(f"weights must be 'binary' or 'distance', got {weights!r}")
    arrays = _load_npz(values_path)
    if "data" not in arrays:
        raise InputError(
            f"{values_path}: no array 'data' [T, N, F]; it has {_listing(list(arrays))}"
        )
    data = _numbers(arrays["data"], values_path, "data", "[T, N, F]")
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3 or 0 in data.shape:
        raise InputError(f"{values_path}: data has shape {data.shape}, expected [T, N, F]")
    data = data[:, :, _channels(channels, data.shape[2], values_path)]
    _check_finite(data, values_path, "data")
    sensor_ids = None
    files = [values_path, graph_path]
    if ids_file is not None:
        ids_path = _file(ids_file, "PEMS sensor ID list (PEMS03.txt)")
        sensor_ids = _id_list(ids_path, data.shape[1], values_path)
        files.append(ids_path)
    matrix = _edge_list(graph_path, data.shape[1], sensor_ids, weights, values_path)
    return TrafficSeries(
        values=data.astype(np.float32),
        adjacency=matrix.astype(np.float32),
        sensor_ids=sensor_ids or [str(i) for i in range(data.shape[1])],
        interval_minutes=_positive(interval_minutes, "interval_minutes"),
        files=files,
    )


def _channels(channels: list[int] | None, available: int, path: Path) -> list[int]:
    """The channel indices to keep: all by default, each in 0..F-1."""
    if channels is None:
        return list(range(available))
    if not channels:
        raise InputError("channels is empty; give at least one channel index (or None for all)")
    for channel in channels:
        if not 0 <= channel < available:
            raise InputError(
                f"{path}: channel {channel} does not exist; data has channels 0..{available - 1}"
            )
    return list(channels)


def _id_list(path: Path, count: int, readings: Path) -> list[str]:
    """One sensor ID a line (blank lines skipped), ``count`` of them, none repeated."""
    ids, lines = [], []
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                ids.append(line.strip())
                lines.append(number)
    _check_unique(ids, lambda i: f"{path}:{lines[i]}")
    if len(ids) != count:
        raise InputError(
            f"{path}: {len(ids)} sensor IDs, expected {count} (the sensors in {readings})"
        )
    return ids


def _edge_list(
    path: Path, count: int, ids: list[str] | None, weights: str, readings: Path
) -> np.ndarray:
    """``from,to,cost`` rows → adjacency [N, N] (1 or the cost at [from, to])."""
    rows = _csv_rows(path)
    first = next(rows, None)
    if first is None:
        raise InputError(f"{path}: no rows, expected the header 'from,to,cost'")
    line, cells = first
    if [cell.strip().lower() for cell in cells] != ["from", "to", "cost"]:
        raise InputError(f"{path}:{line}: header {','.join(cells)!r}, expected 'from,to,cost'")
    position = None if ids is None else {sensor: index for index, sensor in enumerate(ids)}
    matrix = np.zeros((count, count), dtype=np.float64)
    seen: dict[tuple[int, int], tuple[int, float]] = {}
    for line, cells in rows:
        if len(cells) != 3:
            raise InputError(
                f"{path}:{line}: row has {len(cells)} cells, expected 3 (from, to, cost)"
            )
        ends = [
            _edge_end(path, line, column, cells[column].strip(), count, position, readings)
            for column in (0, 1)
        ]
        cost = _edge_cost(path, line, cells[2].strip(), weights)
        edge = (ends[0], ends[1])
        if edge in seen and seen[edge][1] != cost:
            raise InputError(
                f"{path}:{line}: edge {cells[0].strip()}→{cells[1].strip()} again, with cost "
                f"{cost:g} (line {seen[edge][0]} gave {seen[edge][1]:g})"
            )
        seen[edge] = (line, cost)
        matrix[edge] = 1.0 if weights == "binary" else cost
    if not seen:
        raise InputError(f"{path}: no edges after the header")
    return matrix


def _edge_end(
    path: Path,
    line: int,
    column: int,
    cell: str,
    count: int,
    position: dict[str, int] | None,
    readings: Path,
) -> int:
    """Column ``column`` (0 = from, 1 = to) of an edge row → a sensor index."""
    where = f"{path}:{line}: column {column + 1} ({('from', 'to')[column]!r})"
    if position is not None:
        if cell not in position:
            raise InputError(f"{where}: sensor ID {cell!r} is not in the sensor ID list")
        return position[cell]
    if not (cell.isascii() and cell.isdigit()):
        raise InputError(f"{where}: {cell!r} is not a sensor index (a whole number)")
    index = int(cell)
    if index >= count:
        raise InputError(
            f"{where}: sensor index {index} is out of range 0..{count - 1} ({readings} has {count} "
            "sensors); if the file names sensors by ID (PEMS03), give the ID list (ids_file)"
        )
    return index


def _edge_cost(path: Path, line: int, cell: str, weights: str) -> float:
    """Column 3 of an edge row: a finite, non-negative cost (positive when it is the weight)."""
    where = f"{path}:{line}: column 3 ('cost')"
    if not _is_number(cell) or not np.isfinite(float(cell)):
        raise InputError(f"{where}: {cell!r} is not a finite number")
    cost = float(cell)
    if cost < 0 or (cost == 0 and weights == "distance"):
        raise InputError(
            f"{where}: cost {cost:g}; expected a positive distance (0 would read as no edge)"
        )
    return cost


# --- our own npz ---------------------------------------------------------------------------------


def read_npz(path: str | Path) -> TrafficSeries:
    """Our ``.npz``: ``values`` [T, N, C] or [T, N], ``adjacency`` [N, N]; optional ``mask`` [T, N]
    (True = observed; readings where it is False are set to 0 — the rest of the app takes 0 as
    missing — so they may hold anything, NaN included), ``timestamps`` [T] (datetime64, or int64
    unix seconds), ``sensor_ids`` [N] (default "0".."N-1"), ``coordinates`` [N, 2] and
    ``interval_minutes`` (default: the timestamps' step, else 5). Other keys are refused."""
    path = _file(path, "traffic .npz")
    arrays = _load_npz(path)
    unknown = sorted(set(arrays) - set(NPZ_KEYS))
    if unknown:
        raise InputError(
            f"{path}: unknown array(s) {_listing(unknown)}; expected {', '.join(NPZ_KEYS)}"
        )
    for key in ("values", "adjacency"):
        if key not in arrays:
            raise InputError(f"{path}: no array {key!r}; it has {_listing(list(arrays))}")
    values = _numbers(arrays["values"], path, "values", "[T, N, C]")
    if values.ndim == 2:
        values = values[:, :, None]
    if values.ndim != 3 or 0 in values.shape:
        raise InputError(f"{path}: values has shape {arrays['values'].shape}, expected [T, N, C]")
    steps, sensors, _ = values.shape
    if "mask" in arrays:
        values[~_mask(arrays["mask"], path, (steps, sensors))] = 0.0
    _check_finite(values, path, "values")
    adjacency = _numbers(arrays["adjacency"], path, "adjacency", "[N, N]")
    _check_weights(adjacency, path, "adjacency", sensors, "values")
    sensor_ids = [str(i) for i in range(sensors)]
    if "sensor_ids" in arrays:
        sensor_ids = _ids(arrays["sensor_ids"], path, "sensor_ids", sensors)
    stamps = None
    if "timestamps" in arrays:
        stamps = _timestamps(arrays["timestamps"], path, "timestamps", steps)
    coordinates = None
    if "coordinates" in arrays:
        coordinates = _numbers(arrays["coordinates"], path, "coordinates", f"[{sensors}, 2]")
        if coordinates.shape != (sensors, 2):
            raise InputError(
                f"{path}: coordinates has shape {coordinates.shape}, expected [{sensors}, 2]"
            )
        _check_finite(coordinates, path, "coordinates", readings=False)
    interval = _interval_minutes(stamps, path)
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


# --- any format ----------------------------------------------------------------------------------

_READERS: dict[str, Callable[..., TrafficSeries]] = {
    "metr": read_metr,
    "pemsd7": read_pemsd7,
    "tgcn": read_tgcn,
    "pems": read_pems,
    "npz": read_npz,
}
_GRAPH_FILES = {
    "metr": "adj_mx.pkl",
    "pemsd7": "W_228.csv",
    "tgcn": "los_adj.csv",
    "pems": "PEMS04.csv",
}


def read_series(
    format: str,
    values_file: str | Path,
    graph_file: str | Path | None = None,
    locations_file: str | Path | None = None,
    **options: Any,
) -> TrafficSeries:
    """Read any supported format (one of :data:`FORMATS`) by name; ``options`` go to its reader
    (``key`` for metr; ``distances``, ``sigma2``, ``epsilon`` for pemsd7; ``ids_file``,
    ``weights``, ``channels`` for pems; ``interval_minutes`` for pemsd7, tgcn and pems).
    With :func:`write_npz`, a converter from any format to ours."""
    reader = _READERS.get(format)
    if reader is None:
        raise InputError(f"unknown traffic format {format!r}; expected one of {', '.join(FORMATS)}")
    if format == "npz":
        if graph_file is not None:
            raise InputError(f"{values_file}: an npz holds its own adjacency; give no graph file")
        arguments: list[Any] = [values_file]
    else:
        if graph_file is None:
            raise InputError(
                f"{values_file}: format {format!r} needs a graph file (like {_GRAPH_FILES[format]})"
            )
        arguments = [values_file, graph_file]
    if locations_file is not None:
        if format != "metr":
            raise InputError(f"{locations_file}: sensor locations are read only for format 'metr'")
        arguments.append(locations_file)
    accepted = [
        name
        for name, parameter in inspect.signature(reader).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InputError(
            f"format {format!r} has no option(s) {_listing(unknown)}; it takes "
            f"{', '.join(accepted) or 'none'}"
        )
    return reader(*arguments, **options)


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
    path = _file(path, "prediction windows (.npz or .csv)")
    _positive(history, "history")
    _positive(channels, "channels")
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
            problems.append(f"lacks {len(missing)} of the model's sensors: {_listing(missing)}")
        if extra:
            problems.append(f"has {len(extra)} sensors the model does not know: {_listing(extra)}")
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
    found, readings = _numeric_csv(path, header=True)
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
    arrays = _load_npz(path)
    unknown = sorted(set(arrays) - set(WINDOW_KEYS))
    if unknown:
        raise InputError(f"{path}: unknown array(s) {_listing(unknown)}; expected x, y, sensor_ids")
    if "x" not in arrays:
        raise InputError(
            f"{path}: no array 'x' [S, history, N, C]; it has {_listing(list(arrays))}"
        )
    sensors = len(sensor_ids)
    x = _numbers(arrays["x"], path, "x", "[S, history, N, C]")
    if x.ndim == 3:
        x = x[..., None]
    expected = f"[S, {history}, {sensors}, {channels}]"
    if x.ndim != 4 or x.shape[1:] != (history, sensors, channels) or len(x) == 0:
        raise InputError(
            f"{path}: x has shape {arrays['x'].shape}, expected {expected} (history {history}, "
            f"{sensors} sensors, {channels} channel(s))"
        )
    _check_finite(x, path, "x")
    y = None
    if "y" in arrays:
        y = _numbers(arrays["y"], path, "y", "[S, horizon, N]")
        if y.ndim == 4 and y.shape[3] == 1:
            y = y[..., 0]
        if y.ndim != 3 or y.shape[0] != len(x) or y.shape[2] != sensors or y.shape[1] == 0:
            raise InputError(
                f"{path}: y has shape {arrays['y'].shape}, expected [{len(x)}, horizon, {sensors}] "
                "(one target channel)"
            )
        _check_finite(y, path, "y")
    if "sensor_ids" in arrays:
        found = _ids(arrays["sensor_ids"], path, "sensor_ids", sensors)
        order = _column_order(found, sensor_ids, f"{path}: sensor_ids")
        x = x[:, :, order]
        y = None if y is None else y[:, :, order]
    return x.astype(np.float32), None if y is None else y.astype(np.float32)
