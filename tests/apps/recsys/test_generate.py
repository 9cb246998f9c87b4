"""The built-in generator: seeded, well-formed sequences (no repeats, time order), the written file
reads back through the atomic reader, and the signals it promises (item-to-item transitions,
popularity skew) are there."""

from __future__ import annotations

import numpy as np
import pytest

import apps.recsys.generate as generate
from apps.recsys.generate import ensure_generated, generate_interactions, write_atomic
from apps.recsys.readers import read_atomic
from core.train.errors import InputError


def top_successor_share(log) -> float:
    """How often the next item is the most frequent successor of the item before it."""
    same_user = log.users[1:] == log.users[:-1]
    pairs = np.stack([log.items[:-1][same_user], log.items[1:][same_user]], axis=1)
    counts = np.zeros((log.items.max() + 1,) * 2, dtype=np.int64)
    np.add.at(counts, (pairs[:, 0], pairs[:, 1]), 1)
    return counts.max(axis=1).sum() / counts.sum()


def test_same_seed_same_log():
    first, again = generate_interactions(50, 40, 7), generate_interactions(50, 40, 7)
    other = generate_interactions(50, 40, 8)
    for name in ("users", "items", "timestamps", "ratings"):
        assert np.array_equal(getattr(first, name), getattr(again, name))
    assert len(first) != len(other) or not np.array_equal(first.items, other.items)


@pytest.mark.parametrize("seed", [0, 1])
def test_sequences_are_well_formed(seed):
    log = generate_interactions(100, 60, seed, mean_length=20, min_length=5, max_length=40)
    lengths = np.bincount(log.users, minlength=100)
    assert lengths.min() >= 5 and lengths.max() <= 40 and len(log) == lengths.sum()
    assert (np.diff(log.users) >= 0).all()  # user by user
    pairs = log.users * 60 + log.items
    assert len(np.unique(pairs)) == len(log)  # no user repeats an item
    same_user = log.users[1:] == log.users[:-1]
    gaps = np.diff(log.timestamps)[same_user]
    assert (gaps >= 0).all() and (gaps > 0).mean() > 0.9  # in time order; a few ties
    assert (log.timestamps == np.round(log.timestamps)).all()
    assert set(np.unique(log.ratings)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert log.items.min() >= 0 and log.items.max() < 60


def test_sequences_never_outgrow_the_catalogue():
    log = generate_interactions(30, 12, 0, mean_length=50, min_length=5)
    assert np.bincount(log.users).max() <= 12
    with pytest.raises(InputError, match="min_length ≤ items"):
        generate_interactions(10, 4, 0, min_length=5)
    with pytest.raises(InputError, match="p_transition"):
        generate_interactions(10, 40, 0, p_transition=1.5)


def test_transitions_concentrate_the_next_item():
    chained = generate_interactions(400, 60, 0, mean_length=15)
    control = generate_interactions(400, 60, 0, mean_length=15, p_transition=0.0)
    marginal = np.bincount(chained.items).max() / len(chained)
    # the same number of samples without transitions bounds the small-sample concentration
    assert top_successor_share(chained) > 2 * top_successor_share(control)
    assert top_successor_share(chained) > 4 * marginal


def test_popularity_is_skewed():
    log = generate_interactions(500, 200, 0, mean_length=20)
    counts = np.sort(np.bincount(log.items, minlength=200))[::-1]
    assert counts[:20].sum() / counts.sum() > 0.2  # the top 10% of items: uniform would be 0.1


def test_written_file_round_trips(tmp_path):
    log = generate_interactions(40, 30, 3, mean_length=10)
    write_atomic(tmp_path / "x.inter", log)
    read = read_atomic(tmp_path / "x.inter")
    assert read.users.tolist() == [str(u + 1) for u in log.users]
    assert read.items.tolist() == [str(i + 1) for i in log.items]
    assert np.array_equal(read.timestamps, log.timestamps)
    assert np.array_equal(read.ratings, log.ratings)
    assert read.lines.tolist() == list(range(2, len(log) + 2))


def test_ensure_generated_writes_once(tmp_path, monkeypatch):
    path = ensure_generated(tmp_path / "cache", 100, 60, 0)
    assert path == tmp_path / "cache" / "synthetic_u100_i60_s0.inter"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    read = read_atomic(path)
    assert len(np.unique(read.users)) == 100 and len(np.unique(read.items)) <= 60

    def fail(*args, **kwargs):
        raise AssertionError("generated again")

    monkeypatch.setattr(generate, "generate_interactions", fail)
    assert ensure_generated(tmp_path / "cache", 100, 60, 0) == path
