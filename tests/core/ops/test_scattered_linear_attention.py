import pytest
import torch

from core.ops import scattered_linear_attention
from core.ops.naive import linear_attention_tokens, per_segment


def test_matches_token_by_token_formula_with_grads(gen):
    sizes = [0, 1, 7, 40, 3]
    cu_seqlens = torch.tensor([0, *torch.tensor(sizes).cumsum(0).tolist()], dtype=torch.int32)
    q, k = (
        torch.randn(51, 2, 6, generator=gen, dtype=torch.float64).requires_grad_() for _ in range(2)
    )
    v = torch.randn(51, 2, 5, generator=gen, dtype=torch.float64).requires_grad_()
    out = scattered_linear_attention(q, k, v, cu_seqlens)
    expected = per_segment(cu_seqlens, linear_attention_tokens, q, k, v)
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    for got, want in zip(
        grads, torch.autograd.grad(expected.square().sum(), (q, k, v)), strict=True
    ):
        torch.testing.assert_close(got, want)


def test_denominator_guard_keeps_all_negative_window_finite(gen):
    cu_seqlens = torch.tensor([0, 3], dtype=torch.int32)
    q = -torch.rand(3, 1, 4, generator=gen) - 0.1  # φ(q) = 0 everywhere
    out = scattered_linear_attention(q, torch.randn(3, 1, 4), torch.randn(3, 1, 4), cu_seqlens)
    assert torch.isfinite(out).all() and torch.equal(out, torch.zeros_like(out))


def test_bad_input():
    x = torch.randn(5, 2, 4)
    with pytest.raises(ValueError, match="mismatched packed lengths"):
        scattered_linear_attention(x, x[:4], x[:4], torch.tensor([0, 5], dtype=torch.int32))
    with pytest.raises(ValueError, match="must end at"):
        scattered_linear_attention(x, x, x, torch.tensor([0, 4], dtype=torch.int32))
    with pytest.raises(ValueError, match="v contains NaN"):
        scattered_linear_attention(x, x, x * float("nan"), torch.tensor([0, 5], dtype=torch.int32))
