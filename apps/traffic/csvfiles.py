"""CSV tables of numbers, read exactly: a table of readings with or without a header row of
sensor IDs (:func:`numeric_csv`) and a headerless N×N weight matrix (:func:`adjacency_csv`).

Blank lines hold no data and are skipped; every other bad cell is an error naming the file, the
line and the column (with the sensor ID when the header gave one). Big clean files are parsed by
pandas' C reader first (:func:`_fast_numeric_csv`), only for speed: the careful loop stays the one
judge of bad input.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from core.train.errors import InputError

_BLOCK_ROWS = 4096  # rows parsed at a time by the careful CSV loop
_FAST_FROM_BYTES = 8 << 20  # CSVs this big are first tried with pandas (see _fast_numeric_csv)
_NUMERIC_BYTES = b'0123456789.eE+-, \t\r\n"'  # the only bytes a clean CSV of numbers holds


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
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


def _column(index: int, names: list[str] | None) -> str:
    """The 1-based column ``index`` (0-based) of a CSV, with its sensor ID when the header gave one."""
    return f"column {index + 1}" + (f" ({names[index]!r})" if names else "")


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
    if all(is_number(s) for s in ids) and not all(s.lstrip("+-").isdigit() for s in ids):
        raise InputError(
            f"{path}:{line}: the first row looks like readings ({ids[0]!r}, …); expected a header "
            "row of sensor IDs"
        )
    return ids


def numeric_csv(path: Path, *, header: bool) -> tuple[list[str] | None, np.ndarray]:
    """A CSV of numbers → (the header's sensor IDs or None, values [R, W] float64). Every row must
    have as many cells as the header (or the first row) and every cell must be a finite number."""
    rows = csv_rows(path)
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
                if not is_number(cell):
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
    for index, (line, _) in enumerate(csv_rows(path)):
        if index == row:
            return line
    raise AssertionError(f"{path} has no data row {row}")


def adjacency_csv(path: Path, num_sensors: int, readings: Path) -> np.ndarray:
    """An N×N weight matrix with no header → [N, N] float64; N = the sensors in ``readings``."""
    _, matrix = numeric_csv(path, header=False)
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
