"""Ranking metrics of next-item recommendation — HR@k, NDCG@k and catalogue coverage@k — as the
sequential-recommendation literature reports them (SASRec, MQSA-TED), computed from one score
matrix per batch.

A case's rank is 0-based and ties-pessimistic: every other candidate scoring at least as high as
the target ranks above it, so a model that scores everything alike gets the worst rank rather than
the best. HR@k counts targets ranked in the top k; NDCG@k with a single relevant item is
``1 / log2(rank + 2)`` inside the top k and 0 outside. Coverage@k is the fraction of the catalogue
that appears in at least one case's top k (reported for k >= 10), a check that the model does not
recommend the same few popular items to everyone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric


def mask_seen(scores: torch.Tensor, seen: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Set column 0 (padding) and every item in ``seen`` ``int64 [B, S]`` (0 = padding) of the
    full-ranking scores ``[B, N + 1]`` to -inf, in place (the score matrix is the largest tensor
    of an evaluation: no copy), except the case's own target ``[B]``: a target the user consumed
    before (repeat consumption) stays rankable, else it could never be hit. A target of 0
    (unknown: predict) unmasks nothing. Returns ``scores``."""
    known = (targets > 0).nonzero(as_tuple=True)[0]
    kept = scores[known, targets[known]]
    scores.scatter_(1, seen, float("-inf"))
    scores[known, targets[known]] = kept
    scores[:, 0] = float("-inf")
    return scores


def rank_items(
    scores: torch.Tensor,
    seen: torch.Tensor,
    targets: torch.Tensor,
    candidates: torch.Tensor | None,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ranks ``[B]`` of the targets and the top-``k`` item ids ``[B, k]`` from the scores of every
    item ``[B, N + 1]``: over all unseen items (full ranking, ``candidates`` None), or among each
    row's ``candidates [B, C]`` (the target first, then its sampled negatives)."""
    if candidates is None:
        scores = mask_seen(scores, seen, targets)
        return target_ranks(scores, targets), scores.topk(k).indices
    scores = scores.gather(1, candidates)
    top = scores.topk(min(k, scores.shape[1])).indices
    return target_ranks(scores, torch.zeros_like(targets)), candidates.gather(1, top)


def target_ranks(scores: torch.Tensor, targets_col: torch.Tensor) -> torch.Tensor:
    """0-based rank ``int64 [B]`` of each row's target column ``[B]`` among the candidates
    ``[B, C]``, ties-pessimistic: the number of other candidates scoring >= the target. A constant
    model ranks last (C - 1); a NaN score counts as higher than the target, and a NaN target ranks
    last, so a broken model can never look good."""
    target = scores.gather(1, targets_col[:, None])
    below = (scores < target).sum(dim=1, dtype=torch.int32)  # int32: a third faster than int64
    return scores.shape[1] - 1 - below.long()


def hit_rate(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """``float [B]``: 1 where the 0-based rank ``[B]`` is in the top ``k``, else 0."""
    return (ranks < k).double()


def ndcg(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """``float [B]``: ``1 / log2(rank + 2)`` where the 0-based rank ``[B]`` is in the top ``k``,
    else 0 (one relevant item, so the ideal DCG is 1)."""
    gain = 1.0 / torch.log2(ranks.double() + 2.0)
    return torch.where(ranks < k, gain, torch.zeros_like(gain))


class RankingMetrics(Metric):
    """``HR@k``, ``NDCG@k`` for each k, and ``Coverage@k`` for each k >= 10. States are sums (exact
    under DDP): hits, gains and cases per k, and how often each item was in a top k.

    Args:
        num_items: the catalogue size N (items ``1..N``; 0 is padding).
        ks: the cut-offs reported.
    """

    full_state_update = False

    def __init__(self, num_items: int, ks: Sequence[int] = (5, 10, 20)) -> None:
        super().__init__()
        if num_items < 1 or not ks or min(ks) < 1:
            raise ValueError(f"need num_items >= 1 and positive ks, got {num_items}, {ks}")
        self.num_items = num_items
        self.ks = sorted(set(ks))
        self.coverage_ks = [k for k in self.ks if k >= 10]
        size = len(self.ks)
        self.add_state("hits", torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("gains", torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("cases", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state(
            "in_top",
            torch.zeros(len(self.coverage_ks), num_items + 1, dtype=torch.int64),
            dist_reduce_fx="sum",
        )

    def update(self, ranks: torch.Tensor, top_items: torch.Tensor) -> None:
        """``ranks`` ``int64 [B]`` 0-based target ranks; ``top_items`` ``int64 [B, max(ks)]`` the
        item ids each case ranks first, best first (fewer columns only if the catalogue is
        smaller)."""
        self.hits += torch.stack([hit_rate(ranks, k).sum() for k in self.ks])
        self.gains += torch.stack([ndcg(ranks, k).sum() for k in self.ks])
        self.cases += len(ranks)
        for row, k in enumerate(self.coverage_ks):
            items = top_items[:, :k].reshape(-1)
            self.in_top[row] += torch.bincount(items, minlength=self.num_items + 1)

    def compute(self) -> dict[str, torch.Tensor]:
        cases = self.cases
        if cases == 0:
            cases = torch.tensor(float("nan"), dtype=torch.float64, device=self.cases.device)
        out = {}
        for i, k in enumerate(self.ks):
            out[f"HR@{k}"] = self.hits[i] / cases
            out[f"NDCG@{k}"] = self.gains[i] / cases
        for row, k in enumerate(self.coverage_ks):
            covered = (self.in_top[row, 1:] > 0).sum().double()
            out[f"Coverage@{k}"] = covered / self.num_items
        return out
