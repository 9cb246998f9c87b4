"""The raw interaction log every reader returns and the user sequences the app trains on.

A reader keeps the file as it is (tokens, not ids; file order; nothing dropped): turning it into
sequences — filtering, id mapping, ordering by time — is :mod:`apps.recsys.sequences`' job, which
logs every count it changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Interactions:
    """One entry per interaction line of ``path``, in file order.

    Attributes:
        users, items: the user and item tokens as written, ``str`` arrays ``[E]``.
        timestamps: seconds (or the file's own unit) ``float64 [E]``; None when the format has no
            time column (SASRec text: the file order is the time order).
        ratings: ``float64 [E]`` when the file has them, else None.
        lines: 1-based line of each entry in ``path`` ``int64 [E]``, for messages.
        path: the file read.
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray | None
    ratings: np.ndarray | None
    lines: np.ndarray
    path: Path

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class Sequences:
    """Every kept user's items in time order, as ids: items ``1..num_items`` (0 is padding).

    Attributes:
        items: per user ``u = 0..U-1``, ``int64 [n_u]`` item ids in time order.
        times: per user, ``float64 [n_u]`` timestamps (the position in the file when it has none).
        user_tokens: ``[U]`` the file's token of each user.
        item_tokens: ``[num_items]`` the file's token of item ``i`` at index ``i - 1``.
        counts: what preprocessing kept and dropped (users, items, interactions, filtered, …).
        digest: sha256 of the kept interactions (user, item, time), to tell datasets apart.
    """

    items: list[np.ndarray]
    times: list[np.ndarray]
    user_tokens: list[str]
    item_tokens: list[str]
    counts: dict[str, int]
    digest: str

    @property
    def num_items(self) -> int:
        return len(self.item_tokens)

    def __len__(self) -> int:
        return len(self.items)
