"""Ranking metrics on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from apps.recsys.metrics import (
    RankingMetrics,
    hit_rate,
    mask_seen,
    ndcg,
    rank_items,
    target_ranks,
)


def test_hit_rate_and_ndcg_on_hand_made_ranks():
    ranks = torch.tensor([0, 3, 12, 30])
    assert float(hit_rate(ranks, 5).mean()) == 0.5
    assert float(ndcg(ranks, 5).mean()) == pytest.approx((1 + 1 / math.log2(5)) / 4)
    assert float(hit_rate(ranks, 20).mean()) == 0.75
    assert float(ndcg(ranks, 20).mean()) == pytest.approx(
        (1 + 1 / math.log2(5) + 1 / math.log2(14)) / 4
    )
    metrics = RankingMetrics(num_items=40)
    metrics.update(ranks, torch.arange(1, 21).repeat(4, 1))
    out = {name: float(value) for name, value in metrics.compute().items()}
    assert set(out) == {"HR@5", "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20"} | {
        "Coverage@10",
        "Coverage@20",
    }
    assert out["HR@5"] == 0.5 and out["HR@10"] == 0.5 and out["HR@20"] == 0.75
    assert out["NDCG@5"] == pytest.approx((1 + 1 / math.log2(5)) / 4)


def test_ranks_are_ties_pessimistic():
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.5], [0.9, 0.2, 0.3, 0.1], [0.0, 0.0, 0.0, 0.0]])
    ranks = target_ranks(scores, torch.tensor([1, 0, 2]))
    assert ranks.tolist() == [1, 0, 3]  # a tie ranks the target below; a constant model ranks last
    assert ranks.dtype == torch.int64
    nan_target = torch.tensor([[0.1, float("nan"), 0.3]])
    assert target_ranks(nan_target, torch.tensor([1])).tolist() == [2]


def test_mask_seen_masks_history_and_padding_but_not_the_target():
    scores = torch.ones(2, 6)
    seen = torch.tensor([[2, 3, 0], [5, 5, 1]])
    masked = mask_seen(scores, seen, torch.tensor([3, 4]))
    inf = float("-inf")
    assert masked.tolist() == [[inf, 1, inf, 1, 1, 1], [inf, inf, 1, 1, 1, inf]]
    assert masked is scores  # in place: the score matrix is not copied
    # the target 3 was seen before (a repeat) and still ranks: only items 1, 4, 5 tie with it
    assert target_ranks(masked, torch.tensor([3, 4])).tolist() == [3, 2]


def test_coverage_counts_distinct_items_in_any_top_k():
    metrics = RankingMetrics(num_items=30, ks=(5, 10))
    top = torch.stack([torch.arange(1, 11), torch.arange(6, 16)])  # items 1..15 appear
    metrics.update(torch.tensor([0, 50]), top)
    out = metrics.compute()
    assert "Coverage@5" not in out
    assert float(out["Coverage@10"]) == pytest.approx(15 / 30)


def test_two_halves_accumulate_like_one_update():
    gen = torch.Generator().manual_seed(0)
    ranks = torch.randint(0, 40, (10,), generator=gen)
    top = torch.randint(1, 101, (10, 20), generator=gen)
    whole, parts = RankingMetrics(100), RankingMetrics(100)
    whole.update(ranks, top)
    parts.update(ranks[:4], top[:4])
    parts.update(ranks[4:], top[4:])
    expected = whole.compute()
    for name, value in parts.compute().items():
        assert float(value) == pytest.approx(float(expected[name])), name
    half = RankingMetrics(100)
    half.update(ranks[:4], top[:4])
    assert float(half.compute()["Coverage@20"]) < float(expected["Coverage@20"])


def test_an_unknown_target_unmasks_nothing_not_even_padding() -> None:
    scores = torch.tensor([[9.0, 1.0, 2.0, 3.0]])
    masked = mask_seen(scores, torch.tensor([[2, 0]]), torch.tensor([0]))
    assert masked[0].tolist() == [float("-inf"), 1.0, float("-inf"), 3.0]


def test_rank_items_among_sampled_candidates() -> None:
    scores = torch.tensor([[0.0, 5.0, 1.0, 7.0, 3.0]])  # items 1..4
    candidates = torch.tensor([[2, 1, 4]])  # target 2 first, then negatives 1 and 4
    ranks, top = rank_items(scores, torch.tensor([[1]]), torch.tensor([2]), candidates, k=5)
    assert ranks.tolist() == [2]  # items 1 (5.0) and 4 (3.0) score above the target's 1.0
    assert top.tolist() == [[1, 4, 2]]  # only candidates; the seen item 1 is a candidate here
