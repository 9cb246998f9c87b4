"""The warm-up then inverse-square-root schedule."""

from __future__ import annotations

import itertools

import pytest
import torch

from core.train.schedules import WarmupInverseSqrt


def test_rises_linearly_then_decays_as_the_inverse_square_root() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.5)
    schedule = WarmupInverseSqrt(optimizer, warmup_steps=4)
    rates = []
    for _ in range(16):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[:4] == pytest.approx([0.125, 0.25, 0.375, 0.5])
    assert rates[15] == pytest.approx(0.5 * (4 / 16) ** 0.5)
    assert all(a > b for a, b in itertools.pairwise(rates[4:]))


def test_refuses_no_warmup() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.5)
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupInverseSqrt(optimizer, warmup_steps=0)
