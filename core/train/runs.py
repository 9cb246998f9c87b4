"""Run folders: ``runs/<app>/<run_name>/<invocation>/`` — one folder per ``fit``/``test``/… invocation
holding its config, logs, figures and (for ``fit``) its checkpoints, so nothing is overwritten and every
checkpoint belongs to the run that wrote it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from core.train.errors import InputError


def runs_root() -> Path:
    """``runs/`` under the working directory, or ``$MANYHEADS_RUNS`` (tests use a temporary one)."""
    return Path(os.environ.get("MANYHEADS_RUNS", "runs"))


CHECKPOINT_ALIASES = ("best", "last")


def fresh_log_dir(run_dir: Path, subcommand: str) -> Path:
    """``<run_dir>/<subcommand>``, or ``<subcommand>-2``, ``-3``… when taken."""
    candidate, n = run_dir / subcommand, 1
    while candidate.exists():
        n += 1
        candidate = run_dir / f"{subcommand}-{n}"
    return candidate


def fit_invocations(run_dir: Path) -> list[Path]:
    """The run's ``fit``/``fit-N`` folders, oldest first (by their number)."""

    def number(path: Path) -> int:
        _, _, suffix = path.name.partition("-")
        return int(suffix) if suffix.isdigit() else 1

    found = [p for p in run_dir.glob("fit*") if p.is_dir() and p.name.split("-")[0] == "fit"]
    return sorted(found, key=number)


def resolve_checkpoint(run_dir: Path, alias: str) -> Path:
    """``best``/``last`` → the file of the newest ``fit`` invocation of ``run_dir`` that wrote one."""
    for invocation in reversed(fit_invocations(run_dir)):
        path = invocation / "checkpoints" / f"{alias}.ckpt"
        if path.is_file():
            return path
    raise InputError(
        f"--ckpt_path {alias}: no {alias}.ckpt under {run_dir}/fit*/checkpoints/ "
        f"(train first with `fit`, or pass the path of a checkpoint file)"
    )


def remove_stub(log_dir: Path) -> bool:
    """Delete an invocation folder that holds no checkpoint (a run that failed before it saved
    anything), so the next invocation gets the documented name, with the run, app and runs folders
    it leaves empty. Returns whether it was removed."""
    if not log_dir.is_dir() or any(log_dir.rglob("*.ckpt")):
        return False
    shutil.rmtree(log_dir)
    for folder in log_dir.parents[:3]:  # runs/<app>/<run_name>, then <app>, then runs/, if empty
        if any(folder.iterdir()):
            break
        folder.rmdir()
    return True
