"""The one exception type for bad user input, so the CLI can tell it from a bug."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input — a malformed or missing data file, a wrong value or path. The message names the
    file (and line) and what was expected; the CLI prints it as one line and exits with status 2,
    while any other exception (a bug) keeps its traceback."""
