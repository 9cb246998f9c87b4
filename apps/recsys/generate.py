"""The built-in recsys data: seeded user sequences that need no download, written as a RecBole
atomic ``.inter`` file so generated and real data go through the same reader.

The generative process (:func:`generate_interactions`) mixes the two signals MQSA-TED targets:

* **Collaborative taste.** Items fall into a few genre clusters; each cluster has a centre in a
  ``dim``-dimensional space and an item's factor is its centre plus noise. A user's factor mixes the
  centres of two favourite genres (unequal weights) plus noise. Items also have a Zipf-like
  popularity (a random rank r, weight r^-zipf). A *taste pick* samples an item the user has not
  seen with probability ∝ exp(taste · user·item) × popularity.
* **Item-to-item transitions.** Each item has 3–8 likely successors (fewer when a draw repeats),
  most within its own cluster and at least one anywhere, with random (Dirichlet) probabilities: a
  sparse Markov chain.
* **Sequences.** Lengths are log-normal around ``mean_length``, clipped to
  ``[min_length, max_length]`` (and to the number of items). The first item is a taste pick; each
  later step follows the chain from the previous item with probability ``p_transition`` (among
  its successors the user has not seen), else, or when every successor is seen, is a taste pick.
  No user repeats an item.
* **Times and ratings.** Each user starts on a random day of three years from 2015; gaps are
  log-normal (minutes to days, a median of two hours), and about 2% are 0 (ties, in sequence
  order in the file). Ratings 1–5 grow with the user–item taste score, plus noise.

What a model can learn: from the taste alone, which genres and popular items a user favours (what
a model ignoring the order, e.g. matrix factorisation, can reach); from the order, the successors
of the last item, which carry about half the next steps with a few candidates each. So an
order-aware model (SASRec, MQSA-TED) should clearly beat a pure taste model, and a model that uses
both should beat one that only follows the last item.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.train.errors import InputError

log = logging.getLogger(__name__)

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
START = 1420070400  # 2015-01-01 00:00 UTC, the earliest start of a user's sequence
_SLOTS = 8  # the most successors an item has
_CHUNK = 1024  # users whose taste rankings are drawn at a time (bounds the [users, items] array)


@dataclass(frozen=True)
class SyntheticLog:
    """Generated interactions, user by user, each user's in sequence (time) order.

    Attributes:
        users: ``int64 [E]`` user index ``0..U-1`` (its token in the file is ``index + 1``).
        items: ``int64 [E]`` item index ``0..I-1`` (token ``index + 1``).
        timestamps: ``float64 [E]`` whole seconds, non-decreasing per user.
        ratings: ``float64 [E]`` 1.0–5.0.
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


def generate_interactions(
    num_users: int,
    num_items: int,
    seed: int,
    *,
    dim: int = 8,
    num_clusters: int = 8,
    zipf: float = 1.0,
    taste: float = 3.0,
    p_transition: float = 0.5,
    mean_length: float = 50.0,
    min_length: int = 5,
    max_length: int = 200,
) -> SyntheticLog:
    """Draw the interactions of ``num_users`` users on ``num_items`` items (see the module
    docstring); the same arguments give the same log."""
    max_length = min(max_length, num_items)
    if num_users < 1 or num_items < 2 or not 1 <= min_length <= max_length:
        raise InputError(
            f"cannot generate {num_users} users on {num_items} items with sequences of "
            f"{min_length}..{max_length} items; expected users ≥ 1 and min_length ≤ items"
        )
    if not 0.0 <= p_transition <= 1.0:
        raise InputError(f"p_transition must be in [0, 1], got {p_transition}")
    rng = np.random.default_rng(seed)
    clusters = rng.permutation(np.arange(num_items) % min(num_clusters, num_items))
    centres = rng.normal(size=(clusters.max() + 1, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    item_factors = centres[clusters] + 0.5 * rng.normal(size=(num_items, dim)) / np.sqrt(dim)
    favourites = rng.integers(len(centres), size=(num_users, 2))
    weight = rng.uniform(0.5, 1.0, size=(num_users, 1))
    user_factors = (
        weight * centres[favourites[:, 0]]
        + (1 - weight) * centres[favourites[:, 1]]
        + 0.3 * rng.normal(size=(num_users, dim)) / np.sqrt(dim)
    )
    log_popularity = -zipf * np.log1p(rng.permutation(num_items))
    successors, chances = _transitions(rng, clusters)

    lengths = rng.lognormal(np.log(mean_length) - 0.75**2 / 2, 0.75, size=num_users)
    lengths = np.clip(np.round(lengths), min_length, max_length).astype(np.int64)
    order = np.argsort(-lengths, kind="stable")  # longest first: the users active at step t lead
    ranked = _taste_rankings(
        rng, user_factors[order], item_factors, log_popularity, taste, max_length
    )
    active = np.searchsorted(-lengths[order], -np.arange(max_length), side="left")  # users > t
    sequences = np.zeros((num_users, max_length), dtype=np.int64)
    seen = np.zeros((num_users, num_items), dtype=bool)  # 18 MB at the default size
    pointer = np.zeros(num_users, dtype=np.int64)  # each user's next taste pick in ``ranked``
    for step in range(max_length):
        rows = np.arange(active[step])  # the active users lead
        chosen = np.full(len(rows), -1)
        if step > 0:
            last = sequences[rows, step - 1]
            chosen = _follow(rng, last, successors, chances, seen[: len(rows)], p_transition)
        picking = rows[chosen < 0]
        while len(picking):  # skip the taste picks the chain has taken already
            taken = seen[picking, ranked[picking, pointer[picking]]]
            pointer[picking[taken]] += 1
            picking = picking[taken]
        picking = rows[chosen < 0]
        chosen[picking] = ranked[picking, pointer[picking]]
        pointer[picking] += 1
        sequences[rows, step] = chosen
        seen[rows, chosen] = True

    by_user = np.empty_like(sequences)
    by_user[order] = sequences
    kept = np.arange(max_length) < lengths[:, None]
    users = np.repeat(np.arange(num_users), lengths)
    items = by_user[kept]
    gaps = np.maximum(1.0, np.round(rng.lognormal(np.log(7200.0), 2.0, size=kept.shape)))
    gaps[rng.random(kept.shape) < 0.02] = 0.0
    gaps[:, 0] = rng.integers(0, 3 * 365, num_users) * 86400 + rng.integers(0, 86400, num_users)
    timestamps = (START + np.cumsum(gaps, axis=1))[kept]
    score = np.einsum("ed,ed->e", user_factors[users], item_factors[items])
    z = (score - score.mean()) / (score.std() or 1.0)
    ratings = np.clip(np.round(3.0 + 1.2 * z + 0.6 * rng.normal(size=len(z))), 1.0, 5.0)
    return SyntheticLog(users, items, timestamps, ratings)


def _follow(
    rng: np.random.Generator,
    last: np.ndarray,
    successors: np.ndarray,
    chances: np.ndarray,
    seen: np.ndarray,
    p_transition: float,
) -> np.ndarray:
    """One chain step for each user: with probability ``p_transition``, a successor of their
    ``last`` item they have not ``seen`` (``[n, I]``), drawn by its chance; else (or when every
    successor is seen) -1, left to a taste pick."""
    rows = np.arange(len(last))
    options = successors[last]
    cumulative = np.cumsum(chances[last] * ~seen[rows[:, None], options], axis=1)
    draw = rng.random(len(rows)) * cumulative[:, -1]
    picked = options[rows, np.minimum((cumulative <= draw[:, None]).sum(axis=1), _SLOTS - 1)]
    follow = (rng.random(len(rows)) < p_transition) & (cumulative[:, -1] > 0)
    follow &= ~seen[rows, picked]  # a rounding edge can land on a seen slot: leave it to taste
    return np.where(follow, picked, -1)


def _transitions(rng: np.random.Generator, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Markov chain: successors ``[I, 8]`` (item indices) and their chances ``[I, 8]`` (rows
    sum to 1; 0 for unused slots, self-loops and repeats)."""
    num_items = len(clusters)
    items = np.arange(num_items)[:, None]
    count = rng.integers(3, _SLOTS + 1, size=(num_items, 1))
    inside = count - np.maximum(1, np.round(0.3 * count))  # slots drawn within the cluster
    by_cluster = np.argsort(clusters, kind="stable")
    sizes = np.bincount(clusters)
    starts = np.cumsum(sizes) - sizes
    mine = clusters[:, None]
    within = by_cluster[starts[mine] + rng.integers(0, sizes[mine], size=(num_items, _SLOTS))]
    anywhere = rng.integers(0, num_items - 1, size=(num_items, _SLOTS))
    anywhere += anywhere >= items  # never the item itself
    slots = np.arange(_SLOTS)
    successors = np.where(slots < inside, within, anywhere)
    repeated = np.stack(
        [(successors[:, :k] == successors[:, k : k + 1]).any(axis=1) for k in range(_SLOTS)], 1
    )
    usable = (slots < count) & (successors != items) & ~repeated
    chances = rng.gamma(1.0, size=(num_items, _SLOTS)) * usable
    return successors, chances / chances.sum(axis=1, keepdims=True)


def _taste_rankings(
    rng: np.random.Generator,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    log_popularity: np.ndarray,
    taste: float,
    length: int,
) -> np.ndarray:
    """Each user's first ``length`` taste picks ``[U, length]``: items in the order of sampling
    without replacement ∝ exp(taste · user·item) × popularity (the Gumbel top-k trick), so skipping
    the seen ones gives a sample among the unseen."""
    ranked = np.empty((len(user_factors), length), dtype=np.int64)
    for start in range(0, len(user_factors), _CHUNK):
        block = user_factors[start : start + _CHUNK]
        keys = taste * (block @ item_factors.T) + log_popularity
        keys += rng.gumbel(size=keys.shape)
        top = np.argpartition(-keys, length - 1, axis=1)[:, :length]
        best = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
        ranked[start : start + len(block)] = np.take_along_axis(top, best, axis=1)
    return ranked


def write_atomic(path: str | Path, generated: SyntheticLog) -> None:
    """``generated`` as a RecBole atomic ``.inter`` file (tokens are indices + 1)."""
    rows = zip(
        (generated.users + 1).tolist(),
        (generated.items + 1).tolist(),
        generated.ratings.tolist(),
        generated.timestamps.astype(np.int64).tolist(),
        strict=True,
    )
    text = "".join(f"{user}\t{item}\t{rating:g}\t{time}\n" for user, item, rating, time in rows)
    Path(path).write_text(HEADER + "\n" + text, encoding="utf-8")


def ensure_generated(root: Path, num_users: int, num_items: int, seed: int) -> Path:
    """``root/synthetic_u<users>_i<items>_s<seed>.inter``, generated (with the default process)
    and written only when not there yet."""
    path = Path(root) / f"synthetic_u{num_users}_i{num_items}_s{seed}.inter"
    if path.exists():
        return path
    generated = generate_interactions(num_users, num_items, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per process: DDP ranks
    try:
        write_atomic(partial, generated)
        os.replace(partial, path)  # atomic: a crash never leaves a half-written file behind
    finally:
        partial.unlink(missing_ok=True)
    log.info(
        "generated %d interactions of %d users on %d items (seed %d) into %s",
        len(generated),
        num_users,
        num_items,
        seed,
        path,
    )
    return path
