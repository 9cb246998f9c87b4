"""Checks every traffic file reader shares, each raising :class:`InputError` on bad input.

Messages name the file, the line (or row) and column, 1-based as an editor shows them (array
indices in ``.npz`` files are 0-based, as numpy prints them), and what was expected. NaN and
infinite readings are refused: the public files mark a missing reading by 0, and so does the rest
of the app.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.train.errors import InputError

_SHOW = 5  # how many offending names a message lists


def listing(names: list[str]) -> str:
    """``'a', 'b', 'c' and 4 more``: the first few of a list of offending names."""
    shown = ", ".join(repr(name) for name in names[:_SHOW])
    return shown + (f" and {len(names) - _SHOW} more" if len(names) > _SHOW else "")


def positive(value: int, name: str) -> int:
    """``value`` as an int, refusing anything but a positive whole number (``name``: which)."""
    if int(value) != value or value < 1:
        raise InputError(f"{name} must be a positive whole number, got {value}")
    return int(value)


def as_numbers(array: np.ndarray, path: Path, key: str, shapes: str) -> np.ndarray:
    """A numeric array (``shapes``: what was expected, for the message) as float64."""
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"{path}: {key} has dtype {array.dtype}, expected numbers {shapes}")
    return array.astype(np.float64)


def check_finite(array: np.ndarray, path: Path, key: str, readings: bool = True) -> None:
    """Refuse NaN/inf, naming the 0-based index of the first one."""
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        index = tuple(int(i) for i in bad[0])
        where = ", ".join(str(i) for i in index)
        hint = " (a missing reading is written as 0)" if readings else ""
        raise InputError(
            f"{path}: {key}[{where}] is {array[index]}, expected a finite number{hint}"
        )


def check_weights(matrix: np.ndarray, path: Path, key: str, num_sensors: int, source: str) -> None:
    """An [N, N] adjacency: square, N = ``num_sensors`` (from ``source``), finite, non-negative."""
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise InputError(f"{path}: {key} has shape {matrix.shape}; an adjacency matrix is [N, N]")
    if len(matrix) != num_sensors:
        raise InputError(
            f"{path}: {key} is {len(matrix)}×{len(matrix)}, expected {num_sensors}×{num_sensors} "
            f"(one row and column per sensor in {source})"
        )
    check_finite(matrix, path, key, readings=False)
    negative = np.argwhere(matrix < 0)
    if len(negative):
        row, column = negative[0]
        raise InputError(
            f"{path}: {key}[{row}, {column}] = {matrix[row, column]:g} is negative (0 = no edge)"
        )


def check_unique(ids: list[str], where: Callable[[int], str]) -> None:
    """Refuse an empty or repeated sensor ID; ``where(i)`` names entry ``i`` (0-based)."""
    first: dict[str, int] = {}
    for index, sensor in enumerate(ids):
        if not sensor:
            raise InputError(f"{where(index)}: empty sensor ID")
        if sensor in first:
            raise InputError(f"{where(index)}: sensor ID {sensor!r} repeats entry {first[sensor]}")
        first[sensor] = index


def check_increasing(stamps: np.ndarray, path: Path, label: Callable[[int], str]) -> None:
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


def interval_from_timestamps(stamps: np.ndarray | None, path: Path, default: int = 5) -> int:
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
