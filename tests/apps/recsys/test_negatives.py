"""The in-step negative sampler of the sampled-BCE loss: a binary search finds clashes exactly as
comparing every pair does, and the negatives avoid the user's inputs and the targets."""

from __future__ import annotations

import torch

from apps.recsys.data import TrainBatch
from apps.recsys.model import RecsysConfig
from apps.recsys.task import NEGATIVE_REDRAWS, RecsysTask, occurs_in_row


def test_binary_search_membership_equals_every_pair(gen: torch.Generator) -> None:
    rows = torch.randint(0, 30, (16, 25), generator=gen)  # repeats and 0-padding included
    values = torch.randint(0, 40, (16, 25), generator=gen)  # beyond the rows' largest too
    every_pair = (values[..., None] == rows[:, None, :]).any(-1)
    assert every_pair.any() and not every_pair.all()
    assert torch.equal(occurs_in_row(rows.sort(-1).values, values), every_pair)


def pairwise_sampler(batch: TrainBatch, n: int) -> torch.Tensor:
    """The sampler written with every pair compared (the draws in the same order)."""
    negatives = torch.randint(1, n + 1, batch.items.shape)
    for _ in range(NEGATIVE_REDRAWS):
        inputs = (negatives[..., None] == batch.items[:, None, :]).any(-1)
        clash = inputs | (negatives == batch.targets)
        if not clash.any():
            break
        negatives[clash] = torch.randint(1, n + 1, (int(clash.sum()),))
    return negatives


def test_negatives_avoid_inputs_and_targets_and_match_the_pairwise_sampler(
    gen: torch.Generator,
) -> None:
    n_items, length = 60, 20  # a third of the catalogue in each window: many redraws
    items = torch.randint(0, n_items + 1, (32, length), generator=gen)
    targets = torch.randint(1, n_items + 1, (32, length), generator=gen)
    batch = TrainBatch(items, targets, teacher=None)
    config = RecsysConfig(d_model=8, num_blocks=1, long_query=None)
    task = RecsysTask([str(i) for i in range(1, n_items + 1)], length, config, loss="sampled_bce")
    torch.manual_seed(7)
    negatives = task.sample_negatives(batch)
    torch.manual_seed(7)
    assert torch.equal(negatives, pairwise_sampler(batch, n_items))
    clash = (negatives[..., None] == items[:, None, :]).any(-1) | (negatives == targets)
    assert clash.float().mean() < 0.01  # what 4 redraws leave at a 1-in-3 clash rate: ~0.4 %
    assert negatives.min() >= 1 and negatives.max() <= n_items
