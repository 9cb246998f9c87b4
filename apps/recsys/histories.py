"""Histories of new users to recommend for (``predict``): one user a line, ``user item item …``,
whitespace-separated item tokens in time order, as in the training file's vocabulary."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from core.train import InputError

log = logging.getLogger("apps.recsys")


def read_histories(path: Path, index: dict[str, int]) -> tuple[list[str], list[np.ndarray]]:
    """Users and their histories as item ids, by ``index`` (token → id). Items the model never saw
    cannot be scored or embedded: they are left out of the history, counted and logged."""
    if not path.is_file():
        raise InputError(f"{path}: no such file (expected users' histories, `user item item …`)")
    users: list[str] = []
    histories: list[np.ndarray] = []
    unknown = 0
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise InputError(
                    f"{path}:{number}: a user without items; expected `user item item …`"
                )
            known = [index[token] for token in fields[1:] if token in index]
            unknown += len(fields) - 1 - len(known)
            users.append(fields[0])
            histories.append(np.array(known, dtype=np.int64))
    if not users:
        raise InputError(f"{path}: no histories; expected lines `user item item …`")
    if unknown:
        log.warning("%s: %d item(s) not in the training data were left out", path, unknown)
    return users, histories
