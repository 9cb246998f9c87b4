"""core.nn.Dropout: drop rate per int16 lane, exact scaling, gradients equal to the mask, identity
when off, repeatable under a seed."""

from __future__ import annotations

import math

import pytest
import torch

from core.nn import Dropout
from core.nn.dropout import LEVELS, drop_levels, dropout

N = 1 << 20


def binomial_bound(p: float, n: int) -> float:
    """Five standard deviations of a drop share over n elements."""
    return 5.0 * math.sqrt(p * (1.0 - p) / n)


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 0.9])
def test_each_lane_drops_at_the_rate(p: float) -> None:
    torch.manual_seed(0)
    dropped = dropout(torch.ones(N), p) == 0
    rate = drop_levels(p) / LEVELS
    assert abs(rate - p) <= 0.5 / LEVELS
    # every int16 lane of the 64-bit words (four neighbouring elements) drops at the same rate
    per_lane = dropped.view(-1, 4).double().mean(0)
    assert (per_lane - rate).abs().max() < binomial_bound(rate, N // 4), per_lane


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_kept_elements_are_scaled_so_the_mean_is_kept(p: float) -> None:
    torch.manual_seed(1)
    x = torch.randn(300, 333, dtype=torch.float64)  # numel not a multiple of 4
    y = dropout(x, p)
    kept = y != 0
    scale = LEVELS / (LEVELS - drop_levels(p))
    torch.testing.assert_close(y[kept], x[kept] * scale, rtol=1e-15, atol=0)
    ones = dropout(torch.ones(N), p)
    assert abs(ones.double().mean().item() - 1.0) < scale * binomial_bound(p, N)


def test_gradient_is_the_mask_times_the_scale() -> None:
    torch.manual_seed(2)
    x = torch.randn(64, 50, 32, requires_grad=True)
    grad_out = torch.randn_like(x)
    y = dropout(x, 0.3)
    y.backward(grad_out)
    scale = LEVELS / (LEVELS - drop_levels(0.3))
    expected = grad_out * (y != 0) * scale
    torch.testing.assert_close(x.grad, expected, rtol=0, atol=0)
    assert x.grad.dtype == x.dtype


def test_non_contiguous_input_and_dtypes_are_kept() -> None:
    torch.manual_seed(3)
    x = torch.randn(40, 30).T
    y = dropout(x, 0.5)
    assert y.shape == x.shape
    kept = y != 0
    torch.testing.assert_close(y[kept], 2 * x[kept])
    assert dropout(torch.randn(9, dtype=torch.bfloat16), 0.5).dtype == torch.bfloat16


def test_off_is_the_identity_and_one_is_zero() -> None:
    x = torch.randn(5, 7)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match=r"\[0, 1\], got 1.5"):
        dropout(x, 1.5)


def test_a_seed_repeats_the_mask() -> None:
    x = torch.randn(1000)
    torch.manual_seed(4)
    first = dropout(x, 0.4)
    torch.manual_seed(4)
    assert torch.equal(first, dropout(x, 0.4))
    assert not torch.equal(first, dropout(x, 0.4))


def test_module_is_a_torch_dropout_without_state() -> None:
    module = Dropout(0.25)
    assert isinstance(module, torch.nn.Dropout) and module.p == 0.25  # noqa: TID251
    assert module.state_dict() == {}
    x = torch.randn(8, 16)
    assert module.eval()(x) is x
    torch.manual_seed(5)
    trained = module.train()(x)
    torch.manual_seed(5)
    assert torch.equal(trained, dropout(x, 0.25))
    with pytest.raises(ValueError):
        Dropout(-0.1)
