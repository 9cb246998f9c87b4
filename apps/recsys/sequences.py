"""From the raw interaction log to user sequences, and the evaluation splits drawn from them.

:func:`build_sequences` filters the log (minimum rating, k-core, too-short users), orders each user's
interactions by time and numbers users and items; every count it changes goes into
``Sequences.counts`` and the log. A split (:func:`leave_one_out`, :func:`temporal_split`) is a set
of evaluation cases — user ``u`` at cut ``c``: the history ``items[u][:c]`` predicts
``items[u][c]`` — and each user's training prefix. :func:`sampled_negatives` draws the 100 negatives
of the sampled-ranking protocol (SASRec), and :func:`load_or_draw_negatives` keeps them on disk so
every run is scored against the same ones.

Everything is vectorised with numpy: 1M interactions (ML-1M) build in about two seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apps.recsys.interactions import Interactions, Sequences
from core.train.errors import InputError

logger = logging.getLogger("apps.recsys")

_ROWS_PER_DRAW = 1 << 13  # cases drawn together by sampled_negatives (fixed: keeps draws seeded)


def build_sequences(
    log: Interactions, min_interactions: int = 3, k_core: int = 0, min_rating: float | None = None
) -> Sequences:
    """Filter ``log``, order each user's interactions by time (stable: ties keep file order) and
    number users ``0..U-1`` and items ``1..N`` by first appearance (users in file order, then each
    user's items in time order).

    Filters, in this order: ``min_rating`` (drop interactions rated below it), the iterative
    ``k_core`` (drop users and items with fewer than ``k_core`` interactions until none is left),
    ``min_interactions`` (drop shorter users; 3 = one item each for training, validation and test).
    Repeated (user, item) pairs are kept (repeat consumption) and counted, as are the kept users
    whose lines were not in time order. Without timestamps the file order is the time order and
    ``times`` holds each interaction's 0-based position in the file.

    Raises InputError when a filter leaves nothing, naming it.
    """
    if min_interactions < 1:
        raise InputError(f"min_interactions must be at least 1, got {min_interactions}")
    if k_core < 0:
        raise InputError(f"k_core must be 0 (off) or positive, got {k_core}")
    if len(log) == 0:
        raise InputError(f"{log.path}: no interactions")
    user, user_vocab = _first_appearance(log.users)
    item, item_vocab = _first_appearance(log.items)
    counts = {"read": len(log), "has_timestamps": int(log.timestamps is not None)}

    keep = np.ones(len(log), dtype=bool)
    if min_rating is not None:
        if log.ratings is None:
            raise InputError(
                f"{log.path}: min_rating={min_rating} needs ratings; the file has none"
            )
        keep = log.ratings >= min_rating
        counts["below_min_rating"] = int(len(log) - keep.sum())
        _require(keep, log, f"min_rating={min_rating} (every rating is below it)")
    else:
        counts["below_min_rating"] = 0

    counts |= {"k_core_users": 0, "k_core_items": 0, "k_core_interactions": 0}
    if k_core > 0:
        before = _sizes(user, item, keep)
        keep = _k_core(user, item, keep, k_core)
        _require(keep, log, f"the {k_core}-core filter (k_core={k_core})")
        after = _sizes(user, item, keep)
        for name, b, a in zip(("users", "items", "interactions"), before, after, strict=True):
            counts[f"k_core_{name}"] = b - a

    per_user = np.bincount(user[keep], minlength=len(user_vocab))
    short = (per_user > 0) & (per_user < min_interactions)
    counts["users_too_short"] = int(short.sum())
    counts["too_short_interactions"] = int(per_user[short].sum())
    keep &= ~short[user]
    _require(keep, log, f"min_interactions={min_interactions} (every user is shorter)")

    rows = np.flatnonzero(keep)
    times = rows if log.timestamps is None else log.timestamps[rows]
    times = times.astype(np.float64)
    order = np.lexsort((times, user[rows]))  # users by first appearance, then time; stable
    rows, times = rows[order], times[order]
    users = user[rows]
    same_user = users[1:] == users[:-1]
    counts["users_reordered"] = len(np.unique(users[1:][same_user & (rows[1:] < rows[:-1])]))
    starts = np.flatnonzero(np.r_[True, ~same_user])
    user_id = np.cumsum(np.r_[False, ~same_user])
    item_id, item_order = _first_appearance(item[rows])
    item_id += 1
    counts["repeats"] = len(rows) - len(np.unique(users * len(item_vocab) + item[rows]))
    counts |= {"users": len(starts), "items": len(item_order), "interactions": len(rows)}

    user_tokens = user_vocab[users[starts]].tolist()
    item_tokens = item_vocab[item_order].tolist()
    digest = hashlib.sha256(json.dumps([user_tokens, item_tokens]).encode())
    for array, dtype in ((user_id, "<i8"), (item_id, "<i8"), (times, "<f8")):
        digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    _log_counts(log.path, counts)
    return Sequences(
        items=np.split(item_id, starts[1:]),
        times=np.split(times, starts[1:]),
        user_tokens=user_tokens,
        item_tokens=item_tokens,
        counts=counts,
        digest=digest.hexdigest(),
    )


def _first_appearance(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``int64 [E]`` numbering ``values [E]`` ``0, 1, …`` in order of first appearance, and
    the distinct values in that order ``[K]``."""
    distinct = np.unique(values)  # faster than asking np.unique for indices (a stable sort)
    codes = np.searchsorted(distinct, values)
    first = np.full(len(distinct), len(values))
    np.minimum.at(first, codes, np.arange(len(values)))
    order = np.argsort(first)
    rank = np.empty(len(distinct), dtype=np.int64)
    rank[order] = np.arange(len(distinct))
    return rank[codes], distinct[order]


def _sizes(user: np.ndarray, item: np.ndarray, keep: np.ndarray) -> tuple[int, int, int]:
    """Users, items and interactions left under ``keep``."""
    return len(np.unique(user[keep])), len(np.unique(item[keep])), int(keep.sum())


def _k_core(user: np.ndarray, item: np.ndarray, keep: np.ndarray, k: int) -> np.ndarray:
    """Drop interactions of users and items with fewer than ``k`` of them, until none is dropped:
    dropping an item can push a user below ``k`` and back. Repeats count as interactions."""
    keep = keep.copy()
    while True:
        user_ok = np.bincount(user[keep], minlength=user.max() + 1) >= k
        item_ok = np.bincount(item[keep], minlength=item.max() + 1) >= k
        drop = keep & ~(user_ok[user] & item_ok[item])
        if not drop.any():
            return keep
        keep &= ~drop


def _require(keep: np.ndarray, log: Interactions, what: str) -> None:
    if not keep.any():
        raise InputError(f"{log.path}: no interaction is left after {what}")


def _log_counts(path: Path, counts: dict[str, int]) -> None:
    """One log line per change to the data: nothing is dropped or reordered silently."""
    lines = {
        "below_min_rating": "dropped {} interactions rated below min_rating",
        "k_core_interactions": "the k-core filter dropped {} interactions",
        "users_too_short": "dropped {} users with fewer than min_interactions interactions",
        "users_reordered": "ordered the interactions of {} users by time (not in time order)",
        "repeats": "kept {} repeated (user, item) interactions",
    }
    for key, line in lines.items():
        if counts[key]:
            logger.info("%s: %s", path, line.format(counts[key]))
    sizes = [counts[key] for key in ("users", "items", "interactions", "read")]
    logger.info("%s: %d users, %d items, %d interactions (of %d read)", path, *sizes)


@dataclass(frozen=True)
class Cases:
    """Evaluation cases: user ``users[m]`` with history ``items[u][:cuts[m]]`` and target
    ``items[u][cuts[m]]``.

    Attributes:
        users: ``int64 [M]`` user ids.
        cuts: ``int64 [M]``, ``1 <= cut < len(items[u])``.
    """

    users: np.ndarray
    cuts: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class Split:
    """Training prefixes and evaluation cases of one protocol.

    Attributes:
        protocol: ``"leave_one_out"`` or ``"temporal"``.
        train_lengths: ``int64 [U]``: user ``u`` trains on ``items[u][:train_lengths[u]]`` (0: none).
        val, test: the validation and test cases.
    """

    protocol: str
    train_lengths: np.ndarray
    val: Cases
    test: Cases


def _lengths(seqs: Sequences) -> np.ndarray:
    return np.fromiter((len(s) for s in seqs.items), dtype=np.int64, count=len(seqs))


def leave_one_out(seqs: Sequences) -> Split:
    """SASRec's protocol: each user's last item is the test target, the one before it the
    validation target, and the rest the training prefix."""
    n = _lengths(seqs)
    if (n < 3).any():
        u = int(np.argmax(n < 3))
        raise InputError(
            f"leave-one-out needs 3 items per user (training, validation, test); user "
            f"{seqs.user_tokens[u]!r} has {n[u]}: build the sequences with min_interactions >= 3"
        )
    users = np.arange(len(n), dtype=np.int64)
    return Split("leave_one_out", n - 2, Cases(users, n - 2), Cases(users, n - 1))


def temporal_split(seqs: Sequences, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> Split:
    """A global time split: the cut times ``t_val`` and ``t_test`` leave the first ``ratios[0]``
    and ``ratios[0] + ratios[1]`` of all interactions (by time) before them.

    A user trains on their items before ``t_val``. Validation: each user with a training item and
    an item in ``[t_val, t_test)``; the first such item is the target. Test: each user with an item
    at or after ``t_test`` and an earlier item; the first such item is the target, its history
    including the validation period. Needs real timestamps.
    """
    if seqs.counts.get("has_timestamps", 1) == 0:
        raise InputError(
            "the temporal split needs timestamps, and this dataset has none (its order is the "
            "file order, which is not comparable across users): use the leave-one-out split"
        )
    if len(ratios) != 3 or min(ratios) <= 0 or not np.isclose(sum(ratios), 1.0):
        raise InputError(f"temporal ratios must be 3 positive fractions summing to 1, got {ratios}")
    n = _lengths(seqs)
    times = np.concatenate(seqs.times)
    user = np.repeat(np.arange(len(n), dtype=np.int64), n)
    ordered = np.sort(times)
    at = [int(np.floor(r * len(times) + 1e-9)) for r in np.cumsum(ratios)[:2]]
    t_val, t_test = (ordered[min(i, len(times) - 1)] for i in at)
    before_val = np.bincount(user[times < t_val], minlength=len(n))
    before_test = np.bincount(user[times < t_test], minlength=len(n))
    val_users = np.flatnonzero((before_val >= 1) & (before_test > before_val))
    test_users = np.flatnonzero((before_test >= 1) & (before_test < n))
    for name, users in (("validation", val_users), ("test", test_users)):
        if len(users) == 0:
            raise InputError(
                f"the temporal split ({ratios}) leaves no {name} case: cut times {t_val} and "
                f"{t_test} (too few distinct times?)"
            )
    return Split(
        "temporal",
        before_val,
        Cases(val_users, before_val[val_users]),
        Cases(test_users, before_test[test_users]),
    )


def check_no_leak(seqs: Sequences, split: Split) -> None:
    """Raise ValueError when a split lets training or validation see a later target: a validation
    or test target inside the user's training prefix, or a test target inside (or as) the user's
    validation case. Also checks every cut lies in ``1 <= cut < len(items[u])``."""
    n = _lengths(seqs)
    if (split.train_lengths > n).any() or (split.train_lengths < 0).any():
        raise ValueError("a training prefix is longer than its sequence")
    for name, cases in (("validation", split.val), ("test", split.test)):
        bad = (cases.cuts < 1) | (cases.cuts >= n[cases.users])
        if bad.any():
            raise ValueError(f"{name} case {int(np.argmax(bad))} has a cut outside 1..len-1")
        inside = cases.cuts < split.train_lengths[cases.users]
        if inside.any():
            u = int(cases.users[np.argmax(inside)])
            raise ValueError(f"user {u}'s {name} target lies inside their training prefix")
    val_cut = np.full(len(n), -1, dtype=np.int64)
    np.maximum.at(val_cut, split.val.users, split.val.cuts)
    seen = split.test.cuts <= val_cut[split.test.users]
    if seen.any():
        u = int(split.test.users[np.argmax(seen)])
        raise ValueError(f"user {u}'s test target is seen by their validation case")


def sampled_negatives(seqs: Sequences, cases: Cases, count: int = 100, seed: int = 0) -> np.ndarray:
    """``int64 [M, count]``: per case, ``count`` distinct items drawn uniformly from those its user
    never interacted with (over the whole sequence, as SASRec does), seeded.

    Rejection sampling over all cases at once: each row draws more candidates than it needs and
    keeps the first ``count`` distinct ones the user never had; rows left short draw again, with
    twice as many, and the rare row still short (a user who had almost every item) is drawn
    exactly.
    """
    n_items = seqs.num_items
    n = _lengths(seqs)
    user_of = np.repeat(np.arange(len(n), dtype=np.int64), n)
    seen = np.unique(user_of * (n_items + 1) + np.concatenate(seqs.items))
    free = n_items - np.bincount(seen // (n_items + 1), minlength=len(n))
    if len(cases) and free[cases.users].min() < count:
        u = int(cases.users[np.argmin(free[cases.users])])
        raise InputError(
            f"user {seqs.user_tokens[u]!r} has only {free[u]} of the {n_items} items left unseen: "
            f"too few for {count} sampled negatives"
        )
    rng = np.random.default_rng(seed)
    out = np.zeros((len(cases), count), dtype=np.int64)
    for start in range(0, len(cases), _ROWS_PER_DRAW):
        rows = np.arange(start, min(start + _ROWS_PER_DRAW, len(cases)))
        users = cases.users[rows]
        width = int(np.ceil(1.25 * count * n_items / free[users].min())) + 16
        for _ in range(4):
            got, full = _draw_rows(rng, users, seen, n_items, count, width)
            out[rows[full]] = got
            rows, users, width = rows[~full], users[~full], 2 * width
            if len(rows) == 0:
                break
        for row, user in zip(rows, users, strict=True):
            choices = np.setdiff1d(np.arange(1, n_items + 1), seqs.items[user])
            out[row] = rng.choice(choices, size=count, replace=False)
    return out


def _draw_rows(
    rng: np.random.Generator,
    users: np.ndarray,
    seen: np.ndarray,
    n_items: int,
    count: int,
    width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``[R, width]`` candidates for the users ``[R]``; keep per row the first ``count``
    distinct ones the user never had (``seen``: sorted keys ``user * (N + 1) + item``). Returns
    those ``[F, count]`` and which rows got enough ``bool [R]``."""
    cand = rng.integers(1, n_items + 1, size=(len(users), width), dtype=np.int64)
    keys = users[:, None] * (n_items + 1) + cand
    at = np.searchsorted(seen, keys).clip(max=len(seen) - 1)
    valid = seen[at] != keys
    order = np.argsort(cand, axis=1, kind="stable")
    ordered = np.take_along_axis(cand, order, axis=1)
    repeat = np.zeros_like(valid)
    np.put_along_axis(repeat, order[:, 1:], ordered[:, 1:] == ordered[:, :-1], axis=1)
    valid &= ~repeat
    taken = valid & (np.cumsum(valid, axis=1) <= count)
    full = taken.sum(axis=1) == count
    return cand[full][taken[full]].reshape(-1, count), full


def load_or_draw_negatives(
    path: Path, seqs: Sequences, cases: Cases, count: int, seed: int
) -> np.ndarray:
    """The sampled negatives of ``cases`` ``int64 [M, count]``, drawn once and kept in ``path``
    (``.npy``) with a ``.json`` sidecar naming the data digest, seed, count and cases, so every run
    scores against the same negatives. A saved file made for other data or settings is refused."""
    path = Path(path)
    sidecar = path.with_suffix(".json")
    cases_digest = hashlib.sha256(
        np.ascontiguousarray(cases.users, "<i8").tobytes()
        + np.ascontiguousarray(cases.cuts, "<i8").tobytes()
    ).hexdigest()
    meta = {"digest": seqs.digest, "seed": seed, "count": count, "cases": cases_digest}
    if path.exists() and sidecar.exists():
        saved = json.loads(sidecar.read_text())
        for key, value in meta.items():
            if saved.get(key) != value:
                raise InputError(
                    f"{path}: saved negatives were drawn with {key}={saved.get(key)!r}, this run "
                    f"needs {value!r}; delete {path} and {sidecar.name} to draw them again"
                )
        negatives = np.load(path)
        if negatives.dtype != np.int64 or negatives.shape != (len(cases), count):
            raise InputError(f"{path}: expected int64 {(len(cases), count)}, got {negatives.shape}")
        return negatives
    negatives = sampled_negatives(seqs, cases, count, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, write in (
        (path, lambda f: np.save(f, negatives)),
        (sidecar, lambda f: f.write(json.dumps(meta, indent=1).encode())),
    ):
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, target)  # whole files only, even with several processes drawing at once
    logger.info("%s: drew %d sampled negatives for %d cases", path, count, len(cases))
    return negatives
