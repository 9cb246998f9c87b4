"""From hand-made interaction logs to sequences, splits and sampled negatives."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

from apps.recsys import sequences
from apps.recsys.interactions import Interactions, Sequences
from apps.recsys.sequences import (
    build_sequences,
    check_no_leak,
    leave_one_out,
    load_or_draw_negatives,
    sampled_negatives,
    temporal_split,
)
from core.train.errors import InputError


def make_log(rows: list[tuple], timed: bool = True, rated: bool = False) -> Interactions:
    """An Interactions from ``(user, item[, time[, rating]])`` tuples, in file order."""
    columns = list(zip(*rows, strict=True))
    return Interactions(
        users=np.array(columns[0], dtype=str),
        items=np.array(columns[1], dtype=str),
        timestamps=np.array(columns[2], dtype=np.float64) if timed else None,
        ratings=np.array(columns[3], dtype=np.float64) if rated else None,
        lines=np.arange(1, len(rows) + 1),
        path=Path("hand.txt"),
    )


def as_lists(seqs: Sequences) -> list[list[int]]:
    return [s.tolist() for s in seqs.items]


def test_orders_by_time_with_stable_ties_and_numbers_by_first_appearance(caplog):
    log = make_log(
        [
            ("a", "x", 3),
            ("b", "y", 1),
            ("a", "y", 1),
            ("a", "z", 3),  # ties with x at t=3: stays after it
            ("b", "x", 2),
            ("a", "w", 2),
            ("b", "v", 5),
        ]
    )
    with caplog.at_level(logging.INFO, logger="apps.recsys"):
        seqs = build_sequences(log)
    assert seqs.user_tokens == ["a", "b"]
    assert seqs.item_tokens == ["y", "w", "x", "z", "v"]  # a's items by time, then b's new one
    assert as_lists(seqs) == [[1, 2, 3, 4], [1, 3, 5]]
    assert seqs.times[0].tolist() == [1, 2, 3, 3]
    assert seqs.counts["users_reordered"] == 1  # b's lines were already in time order
    sizes = {key: seqs.counts[key] for key in ("users", "items", "interactions", "read")}
    assert sizes == {"users": 2, "items": 5, "interactions": 7, "read": 7}
    assert "ordered the interactions of 1 users by time" in caplog.text


def test_ties_keep_file_order_beyond_small_sorts():
    # 300 lines at one time: an unstable sort (numpy's default) would shuffle them
    rows = [("a", f"i{j}", 5) for j in range(300)] + [("a", "first", 1)]
    seqs = build_sequences(make_log(rows))
    assert seqs.item_tokens == ["first"] + [f"i{j}" for j in range(300)]
    assert as_lists(seqs) == [list(range(1, 302))]


def test_without_timestamps_the_file_order_is_the_order():
    log = make_log([("a", "x"), ("b", "y"), ("a", "z"), ("a", "x"), ("b", "x"), ("b", "z")], False)
    seqs = build_sequences(log)
    assert as_lists(seqs) == [[1, 2, 1], [3, 1, 2]]  # the repeated x is kept ...
    assert seqs.counts["repeats"] == 1  # ... and counted
    assert seqs.times[0].tolist() == [0, 2, 3]  # positions in the file
    assert seqs.counts["users_reordered"] == 0 and seqs.counts["has_timestamps"] == 0
    with pytest.raises(InputError, match="needs timestamps"):
        temporal_split(seqs)


def test_drops_users_too_short_and_counts_them(caplog):
    log = make_log([("a", "x", 1), ("a", "y", 2), ("a", "z", 3), ("b", "w", 1), ("b", "x", 2)])
    with caplog.at_level(logging.INFO, logger="apps.recsys"):
        seqs = build_sequences(log)
    assert seqs.user_tokens == ["a"] and seqs.item_tokens == ["x", "y", "z"]  # w went with b
    assert seqs.counts["users_too_short"] == 1 and seqs.counts["too_short_interactions"] == 2
    assert "dropped 1 users with fewer than min_interactions" in caplog.text
    assert len(build_sequences(log, min_interactions=2)) == 2
    with pytest.raises(InputError, match="min_interactions=4"):
        build_sequences(log, min_interactions=4)


def test_k_core_iterates_to_a_fixed_point():
    # one pass drops only (c, C); then c has a single interaction left and goes too
    rows = [("a", "A"), ("a", "B"), ("b", "A"), ("b", "B"), ("c", "C"), ("c", "A")]
    log = make_log([(u, i, t) for t, (u, i) in enumerate(rows)])
    seqs = build_sequences(log, min_interactions=1, k_core=2)
    assert seqs.user_tokens == ["a", "b"] and seqs.item_tokens == ["A", "B"]
    counts = seqs.counts
    assert (counts["k_core_users"], counts["k_core_items"], counts["k_core_interactions"]) == (
        1,
        1,
        2,
    )
    assert build_sequences(log, min_interactions=1).counts["k_core_interactions"] == 0
    with pytest.raises(InputError, match="k_core=3"):
        build_sequences(log, min_interactions=1, k_core=3)


def test_min_rating_drops_low_ratings_and_needs_ratings():
    rows = [("a", "x", 1, 5), ("a", "y", 2, 2), ("a", "z", 3, 4), ("a", "w", 4, 4)]
    seqs = build_sequences(make_log(rows, rated=True), min_rating=4)
    assert seqs.item_tokens == ["x", "z", "w"] and seqs.counts["below_min_rating"] == 1
    with pytest.raises(InputError, match="needs ratings"):
        build_sequences(make_log(rows), min_rating=4)
    with pytest.raises(InputError, match="min_rating=6"):
        build_sequences(make_log(rows, rated=True), min_rating=6)


def test_digest_changes_with_any_interaction():
    rows = [("a", "x", 1), ("a", "y", 2), ("a", "z", 3)]
    digest = build_sequences(make_log(rows)).digest
    assert build_sequences(make_log(list(rows))).digest == digest
    assert build_sequences(make_log([*rows[:2], ("a", "w", 3)])).digest != digest
    assert build_sequences(make_log([*rows[:2], ("a", "z", 4)])).digest != digest


def timed_seqs(lengths: list[int], min_interactions: int = 3) -> Sequences:
    rows = [(f"u{u}", f"i{(u + j) % 7}", j) for u, n in enumerate(lengths) for j in range(n)]
    return build_sequences(make_log(rows), min_interactions=min_interactions)


def test_leave_one_out_holds_out_the_last_two():
    seqs = timed_seqs([3, 5])
    split = leave_one_out(seqs)
    assert split.protocol == "leave_one_out"
    assert split.train_lengths.tolist() == [1, 3]
    assert split.val.users.tolist() == [0, 1] and split.val.cuts.tolist() == [1, 3]
    assert split.test.users.tolist() == [0, 1] and split.test.cuts.tolist() == [2, 4]
    check_no_leak(seqs, split)
    with pytest.raises(InputError, match="min_interactions >= 3"):
        leave_one_out(timed_seqs([2, 5], min_interactions=2))


def test_temporal_split_on_a_hand_made_log():
    times = {"A": [1, 2, 7, 9], "B": [3, 4, 10], "C": [5, 6, 8], "D": [9.5, 9.7]}
    rows = [(u, f"{u}{j}", t) for u, ts in times.items() for j, t in enumerate(ts)]
    seqs = build_sequences(make_log(rows), min_interactions=2)
    # 12 times: the first 6 end before t_val = 7, the first 8 before t_test = 9
    split = temporal_split(seqs, ratios=(0.5, 1 / 6, 1 / 3))
    assert split.protocol == "temporal"
    assert split.train_lengths.tolist() == [2, 2, 2, 0]
    assert split.val.users.tolist() == [0, 2]  # A's 7 and C's 8 lie in [7, 9); B has none
    assert split.val.cuts.tolist() == [2, 2]
    assert split.test.users.tolist() == [0, 1]  # C has nothing after 9, D nothing before
    assert split.test.cuts.tolist() == [3, 2]  # A's history keeps its validation item
    check_no_leak(seqs, split)
    with pytest.raises(InputError, match="ratios"):
        temporal_split(seqs, ratios=(0.5, 0.5, 0.5))


def test_check_no_leak_catches_a_tampered_split():
    seqs = timed_seqs([4, 5])
    split = leave_one_out(seqs)
    lengths = np.array([4, 5])
    with pytest.raises(ValueError, match="training prefix"):
        check_no_leak(seqs, dataclasses.replace(split, train_lengths=lengths))
    test_at_val = dataclasses.replace(split.test, cuts=split.val.cuts)
    with pytest.raises(ValueError, match="validation"):
        check_no_leak(seqs, dataclasses.replace(split, test=test_at_val))
    past_end = dataclasses.replace(split.test, cuts=lengths)
    with pytest.raises(ValueError, match="outside"):
        check_no_leak(seqs, dataclasses.replace(split, test=past_end))


def negative_seqs() -> Sequences:
    """30 items; user 0 had 10 of them, user 1 all but 12 (the exact fallback for count 12)."""
    rows = [("u0", f"i{j}", j) for j in range(10)]
    rows += [("u1", f"i{j}", j) for j in range(30) if j not in range(5, 17)]
    rows += [("u2", f"i{j}", j) for j in range(5, 17)]
    return build_sequences(make_log(rows))


def assert_valid_negatives(seqs: Sequences, cases, negatives: np.ndarray, count: int) -> None:
    assert negatives.shape == (len(cases), count) and negatives.dtype == np.int64
    for row, user in zip(negatives, cases.users, strict=True):
        assert len(set(row.tolist())) == count
        assert not set(row.tolist()) & set(seqs.items[user].tolist())
        assert row.min() >= 1 and row.max() <= seqs.num_items


def test_sampled_negatives_are_distinct_unseen_and_seeded():
    seqs = negative_seqs()
    split = leave_one_out(seqs)
    cases = dataclasses.replace(split.test, users=np.array([0, 1, 2, 0]), cuts=np.array([9] * 4))
    negatives = sampled_negatives(seqs, cases, count=12, seed=3)
    assert_valid_negatives(seqs, cases, negatives, 12)
    assert np.array_equal(negatives, sampled_negatives(seqs, cases, count=12, seed=3))
    assert not np.array_equal(negatives, sampled_negatives(seqs, cases, count=12, seed=4))
    with pytest.raises(InputError, match="too few"):
        sampled_negatives(seqs, cases, count=13)


def test_rows_rejection_leaves_short_are_drawn_exactly(monkeypatch):
    seqs = negative_seqs()
    cases = leave_one_out(seqs).test

    def never_enough(rng, users, seen, n_items, count, width):
        return np.zeros((0, count), dtype=np.int64), np.zeros(len(users), dtype=bool)

    monkeypatch.setattr(sequences, "_draw_rows", never_enough)
    assert_valid_negatives(seqs, cases, sampled_negatives(seqs, cases, count=12), 12)


def test_sampled_negatives_are_uniform():
    seqs = negative_seqs()
    many = dataclasses.replace(leave_one_out(seqs).test, users=np.zeros(2000, dtype=np.int64))
    drawn = sampled_negatives(seqs, many, count=10, seed=0)
    freq = np.bincount(drawn.ravel(), minlength=seqs.num_items + 1)
    unseen = np.setdiff1d(np.arange(1, seqs.num_items + 1), seqs.items[0])
    assert freq[unseen].min() > 850 and freq[unseen].max() < 1150  # 1000 each, sd about 30


def test_negatives_are_saved_reloaded_and_checked(tmp_path):
    seqs = negative_seqs()
    cases = leave_one_out(seqs).test
    path = tmp_path / "negatives" / "test.npy"
    drawn = load_or_draw_negatives(path, seqs, cases, count=5, seed=0)
    assert path.exists() and path.with_suffix(".json").exists()
    np.save(path, drawn[::-1].copy())  # proves the next call reads the file rather than redraws
    assert np.array_equal(load_or_draw_negatives(path, seqs, cases, count=5, seed=0), drawn[::-1])
    with pytest.raises(InputError, match="seed"):
        load_or_draw_negatives(path, seqs, cases, count=5, seed=1)
    with pytest.raises(InputError, match="count"):
        load_or_draw_negatives(path, seqs, cases, count=6, seed=0)
    other = dataclasses.replace(seqs, digest="0" * 64)
    with pytest.raises(InputError, match="digest"):
        load_or_draw_negatives(path, other, cases, count=5, seed=0)
