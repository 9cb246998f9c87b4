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
