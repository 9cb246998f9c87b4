"""The one exception type for bad user input, so the CLI can tell it from a bug."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input — a malformed or missing data file, a wrong value or path. The message names the
    file (and line) and what was expected; the CLI prints it as one line and exits with status 2,
    while any other exception (a bug) keeps its traceback."""


def input_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path, refusing a missing, non-regular or empty file; ``what`` says which file
    was expected (``"the T-GCN speed CSV (los_speed.csv)"``)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file (expected {what})")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file (expected {what})")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (expected {what})")
    return path
