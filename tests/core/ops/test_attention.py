import pytest
import torch

from core.ops import attention, causal_mask
from core.ops.naive import softmax_attention


def rand(gen, *shape, dtype=torch.float64):
    return torch.randn(*shape, generator=gen, dtype=dtype)


@pytest.mark.parametrize("len_q,len_k", [(1, 1), (7, 7), (5, 13), (13, 5)])
@pytest.mark.parametrize("causal", [False, True])
def test_matches_naive_with_mask_and_bias(gen, len_q, len_k, causal):
    q, k, v = rand(gen, 2, 3, len_q, 8), rand(gen, 2, 3, len_k, 8), rand(gen, 2, 3, len_k, 5)
    mask = torch.rand(2, 1, len_q, len_k, generator=gen) > 0.3
    bias = rand(gen, 1, 3, len_q, len_k)
    out = attention(q, k, v, mask=mask, bias=bias, causal=causal)
    allowed = mask & causal_mask(len_q, len_k) if causal else mask
    torch.testing.assert_close(out, softmax_attention(q, k, v, allowed, bias))


def test_causal_is_bottom_right_aligned():
    allowed = causal_mask(2, 4)
    assert allowed.tolist() == [[True, True, True, False], [True, True, True, True]]


def test_fully_masked_row_gives_zeros_and_finite_grads(gen):
    q, k, v = (rand(gen, 1, 2, 4, 8).requires_grad_() for _ in range(3))
    mask = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    mask[..., 2, :] = False
    out = attention(q, k, v, mask=mask)
    assert torch.equal(out[:, :, 2], torch.zeros_like(out[:, :, 2]))
    out.sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))


def test_custom_scale_and_gradients(gen):
    q, k, v = (rand(gen, 1, 2, 6, 4).requires_grad_() for _ in range(3))
    torch.autograd.gradcheck(lambda a, b, c: attention(a, b, c, causal=True, scale=0.3), (q, k, v))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"q": torch.randn(2, 4, 8)}, r"q must be \[B, H, L, D\]"),
        ({"k": torch.randn(1, 3, 5, 8)}, "mismatched heads"),
        ({"v": torch.randn(1, 2, 6, 8)}, "mismatched key lengths"),
        ({"mask": torch.ones(1, 2, 5, 4, dtype=torch.bool)}, "does not broadcast"),
        ({"mask": torch.ones(1, 2, 5, 5)}, "must be boolean"),
        ({"q": torch.full((1, 2, 5, 8), float("nan"))}, "q contains NaN"),
        ({"bias": torch.full((5, 5), float("nan"))}, "bias contains NaN"),
        ({"backend": "cuda"}, "backend must be one of"),
    ],
)
def test_bad_input_raises_clear_error(kwargs, message):
    args = {
        "q": torch.randn(1, 2, 5, 8),
        "k": torch.randn(1, 2, 5, 8),
        "v": torch.randn(1, 2, 5, 8),
    }
    args.update(kwargs)
    q, k, v = args.pop("q"), args.pop("k"), args.pop("v")
    with pytest.raises(ValueError, match=message):
        attention(q, k, v, **args)
