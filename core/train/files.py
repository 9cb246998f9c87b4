"""Writing files that readers may find half-written: generated data, caches, feature files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write`` on a scratch name beside ``path``, then rename it to ``path``: an interrupted
    run (a crash, Ctrl-C) never leaves a truncated file under the real name."""
    scratch = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        write(scratch)
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
