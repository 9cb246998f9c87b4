"""MQSA and SASRec: the L-query mean, causality, padding, and that the model can learn."""

from __future__ import annotations

import pytest
import torch

from apps.recsys.model import MQSA, RecsysConfig, last_items_mean
from apps.recsys.softmax import full_softmax_cross_entropy


def test_last_items_mean_by_hand_with_padding() -> None:
    x = torch.tensor([[0.0, 0.0, 1.0, 2.0, 4.0, 8.0]])[..., None]  # two padding slots on the left
    valid = torch.tensor([[False, False, True, True, True, True]])
    got = last_items_mean(x, valid, 3)[0, :, 0]
    expected = torch.tensor([0.0, 0.0, 1.0, 1.5, 7 / 3, 14 / 3])
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(last_items_mean(x, valid, 1), x)


@pytest.mark.parametrize("long_query", [None, 3])
def test_no_future_item_reaches_an_earlier_position(long_query: int | None) -> None:
    torch.manual_seed(0)
    model = MQSA(RecsysConfig(d_model=16, num_blocks=2, n_heads=2, long_query=long_query), 30, 8)
    model.eval()
    items = torch.tensor([[0, 0, 3, 7, 1, 9, 4, 2]])
    changed = items.clone()
    changed[0, 5:] = torch.tensor([11, 12, 13])
    before, after = model(items), model(changed)
    torch.testing.assert_close(before[:, :5], after[:, :5])
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_padding_is_masked_so_a_shorter_window_gives_the_same_outputs() -> None:
    torch.manual_seed(0)
    model = MQSA(RecsysConfig(d_model=16, n_heads=2), 30, 10)
    model.eval()
    items = torch.tensor([[0, 0, 0, 0, 5, 8, 2, 9, 1, 4], [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]])
    full = model(items)
    torch.testing.assert_close(model(items[:1, 4:]), full[:1, 4:])


def test_sasrec_is_the_short_branch_alone() -> None:
    torch.manual_seed(0)
    model = MQSA(RecsysConfig(d_model=8, long_query=None), 12, 6)
    model.eval()
    items = torch.tensor([[0, 1, 2, 3, 4, 5]])
    assert model.long is None
    torch.testing.assert_close(model(items), model.branches(items)["short"])


def test_overfits_a_few_fixed_sequences() -> None:
    torch.manual_seed(0)
    model = MQSA(RecsysConfig(d_model=32, n_heads=2, dropout=0.0), 40, 8)
    items = torch.randint(1, 41, (6, 9))
    inputs, targets = items[:, :-1], items[:, 1:]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        hidden = model(inputs).reshape(-1, 32)
        loss = full_softmax_cross_entropy(hidden, model.items, targets.reshape(-1) - 1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1
