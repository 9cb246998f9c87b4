"""Readers for the public traffic-forecasting files, each returning a :class:`TrafficSeries`, and
:func:`read_series`, which picks the reader by format name.

* METR-LA / PEMS-BAY (DCRNN), :func:`~apps.traffic.metr.read_metr` (in :mod:`apps.traffic.metr`):
  the ``.h5`` speeds, ``adj_mx*.pkl`` and optionally ``graph_sensor_locations*.csv``.
* PeMSD7(M) (STGCN), :func:`read_pemsd7`: ``V_228.csv`` readings [T, N] and ``W_228.csv`` road
  distances [N, N] in metres (no headers), turned into weights as STGCN does (:func:`stgcn_weights`).
* T-GCN, :func:`read_tgcn`: ``los_speed.csv`` / ``sz_speed.csv`` (a header row of sensor IDs, then
  one row a time step) and ``los_adj.csv`` / ``sz_adj.csv`` (no header, weights [N, N]).
* PEMS03/04/07/08 (ASTGCN, STSGCN), :func:`read_pems`: ``PEMS04.npz`` with ``data`` [T, N, F] and the
  edge list ``PEMS04.csv`` (``from,to,cost``; PEMS03 names sensors by ID, in ``PEMS03.txt`` order).
* Our own ``.npz``, :func:`~apps.traffic.npzfiles.read_npz` (in :mod:`apps.traffic.npzfiles`): what
  every converter writes, so converting is ``write_npz(read_series(format, values, graph), out)``
  (``python -m apps.traffic.convert``).

Bad input raises ``InputError`` (a ``ValueError``) naming the file, the line (or row) and column,
and what was expected (see :mod:`apps.traffic.checks`). Nothing is dropped: blank CSV lines hold no
data and are skipped, every other bad cell is an error.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from apps.traffic.checks import (
    as_numbers,
    check_finite,
    check_unique,
    listing,
    positive,
)
from apps.traffic.csvfiles import adjacency_csv, csv_rows, is_number, numeric_csv
from apps.traffic.metr import read_metr
from apps.traffic.npzfiles import load_npz, read_npz
from apps.traffic.series import TrafficSeries
from core.train.errors import InputError, input_file

FORMATS = ("metr", "pemsd7", "tgcn", "pems", "npz")


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
    values_path = input_file(values_file, "the PeMSD7 readings CSV (V_228.csv)")
    graph_path = input_file(graph_file, "the PeMSD7 distance CSV (W_228.csv)")
    if sigma2 <= 0:
        raise InputError(f"sigma2 must be positive, got {sigma2}")
    _, speeds = numeric_csv(values_path, header=False)
    matrix = adjacency_csv(graph_path, speeds.shape[1], values_path)
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
        interval_minutes=positive(interval_minutes, "interval_minutes"),
        files=[values_path, graph_path],
    )


# --- T-GCN ---------------------------------------------------------------------------------------


def read_tgcn(
    values_file: str | Path, graph_file: str | Path, *, interval_minutes: int | None = None
) -> TrafficSeries:
    """The T-GCN CSVs: ``*_speed.csv`` (a header row of sensor IDs, then a row a time step) →
    values [T, N, 1]; ``*_adj.csv`` (no header) → adjacency [N, N]. ``interval_minutes``: None
    means 15 for the Shenzhen files (``sz_*``) and 5 otherwise (Los Angeles)."""
    values_path = input_file(values_file, "the T-GCN speed CSV (los_speed.csv)")
    graph_path = input_file(graph_file, "the T-GCN adjacency CSV (los_adj.csv)")
    sensor_ids, speeds = numeric_csv(values_path, header=True)
    assert sensor_ids is not None
    matrix = adjacency_csv(graph_path, len(sensor_ids), values_path)
    if interval_minutes is None:
        interval_minutes = 15 if values_path.name.lower().startswith("sz_") else 5
    return TrafficSeries(
        values=speeds[:, :, None].astype(np.float32),
        adjacency=matrix.astype(np.float32),
        sensor_ids=sensor_ids,
        interval_minutes=positive(interval_minutes, "interval_minutes"),
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
    values_path = input_file(values_file, "the PEMS .npz readings")
    graph_path = input_file(graph_file, "the PEMS edge list CSV (from,to,cost)")
    if weights not in ("binary", "distance"):
        raise InputError(f"weights must be 'binary' or 'distance', got {weights!r}")
    arrays = load_npz(values_path)
    if "data" not in arrays:
        raise InputError(
            f"{values_path}: no array 'data' [T, N, F]; it has {listing(list(arrays))}"
        )
    data = as_numbers(arrays["data"], values_path, "data", "[T, N, F]")
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3 or 0 in data.shape:
        raise InputError(f"{values_path}: data has shape {data.shape}, expected [T, N, F]")
    data = data[:, :, _channels(channels, data.shape[2], values_path)]
    check_finite(data, values_path, "data")
    sensor_ids = None
    files = [values_path, graph_path]
    if ids_file is not None:
        ids_path = input_file(ids_file, "the PEMS sensor ID list (PEMS03.txt)")
        sensor_ids = _id_list(ids_path, data.shape[1], values_path)
        files.append(ids_path)
    matrix = _edge_list(graph_path, data.shape[1], sensor_ids, weights, values_path)
    return TrafficSeries(
        values=data.astype(np.float32),
        adjacency=matrix.astype(np.float32),
        sensor_ids=sensor_ids or [str(i) for i in range(data.shape[1])],
        interval_minutes=positive(interval_minutes, "interval_minutes"),
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
    check_unique(ids, lambda i: f"{path}:{lines[i]}")
    if len(ids) != count:
        raise InputError(
            f"{path}: {len(ids)} sensor IDs, expected {count} (the sensors in {readings})"
        )
    return ids


def _edge_list(
    path: Path, count: int, ids: list[str] | None, weights: str, readings: Path
) -> np.ndarray:
    """``from,to,cost`` rows → adjacency [N, N] (1 or the cost at [from, to])."""
    rows = csv_rows(path)
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
    if not is_number(cell) or not np.isfinite(float(cell)):
        raise InputError(f"{where}: {cell!r} is not a finite number")
    cost = float(cell)
    if cost < 0 or (cost == 0 and weights == "distance"):
        raise InputError(
            f"{where}: cost {cost:g}; expected a positive distance (0 would read as no edge)"
        )
    return cost


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
            f"format {format!r} has no option(s) {listing(unknown)}; it takes "
            f"{', '.join(accepted) or 'none'}"
        )
    return reader(*arguments, **options)
