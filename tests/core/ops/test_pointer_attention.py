import sys

import pytest
import torch

from core.ops import pointer_attention


def test_matches_loop_formula_and_masks(gen):
    query = torch.randn(2, 3, 6, generator=gen, dtype=torch.float64)
    keys = torch.randn(2, 5, 6, generator=gen, dtype=torch.float64)
    v = torch.randn(6, generator=gen, dtype=torch.float64)
    mask = torch.rand(2, 3, 5, generator=gen) > 0.4
    mask[..., 0] = True
    out = pointer_attention(query, keys, v, mask=mask)
    for b in range(2):
        for i in range(3):
            for j in range(5):
                want = v @ torch.tanh(keys[b, j] + query[b, i]) if mask[b, i, j] else -torch.inf
                assert out[b, i, j].item() == pytest.approx(float(want))


@pytest.mark.parametrize("batch", [1, 7])
def test_chunked_gradients_match_the_formula(gen, batch, monkeypatch):
    module = sys.modules[
        "core.ops.pointer_attention"
    ]  # the package re-exports a same-named function
    monkeypatch.setattr(module, "CHUNK_ELEMENTS", 40)  # several chunks
    query = torch.randn(batch, 3, 4, generator=gen, dtype=torch.float64).requires_grad_()
    keys = torch.randn(batch, 5, 4, generator=gen, dtype=torch.float64).requires_grad_()
    v = torch.randn(4, generator=gen, dtype=torch.float64).requires_grad_()
    out = pointer_attention(query, keys, v)
    expected = torch.tanh(query.unsqueeze(2) + keys.unsqueeze(1)) @ v
    torch.testing.assert_close(out, expected)
    weights = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad((out * weights).sum(), (query, keys, v))
    for got, want in zip(
        grads, torch.autograd.grad((expected * weights).sum(), (query, keys, v)), strict=True
    ):
        torch.testing.assert_close(got, want)
    torch.autograd.gradcheck(lambda a, b, c: pointer_attention(a, b, c), (query, keys, v))


def test_single_step_shape(gen):
    out = pointer_attention(torch.randn(2, 4, generator=gen), torch.randn(2, 7, 4), torch.randn(4))
    assert out.shape == (2, 7)


def test_bad_input():
    q, keys, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(4)
    with pytest.raises(ValueError, match="no input to point at"):
        pointer_attention(q, keys, v, mask=torch.zeros(2, 1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="mismatched attention dims"):
        pointer_attention(q, keys, torch.randn(3))
    with pytest.raises(ValueError, match="keys contains NaN"):
        pointer_attention(q, keys * float("nan"), v)
    with pytest.raises(ValueError, match="does not broadcast"):
        pointer_attention(q, keys, v, mask=torch.ones(2, 3, 4, dtype=torch.bool))
