from functools import partial

import pytest
import torch

from core.ops import varlen_attention
from core.ops.naive import per_segment, segment_attention

SIZES = [0, 1, 7, 40, 16, 17, 3]


def cu(sizes):
    return torch.tensor([0, *torch.tensor(sizes).cumsum(0).tolist()], dtype=torch.int32)


@pytest.mark.parametrize("causal", [False, True])
def test_matches_per_segment_dense_attention_with_grads(gen, causal):
    cu_seqlens, total = cu(SIZES), sum(SIZES)
    q, k, v = (
        torch.randn(total, 2, 8, generator=gen, dtype=torch.float64).requires_grad_()
        for _ in range(3)
    )
    out = varlen_attention(q, k, v, cu_seqlens, causal=causal)
    expected = per_segment(cu_seqlens, partial(segment_attention, causal=causal), q, k, v)
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    for got, want in zip(
        grads, torch.autograd.grad(expected.square().sum(), (q, k, v)), strict=True
    ):
        torch.testing.assert_close(got, want)


def test_cross_attention_between_paired_segments(gen):
    sizes_q, sizes_k = [3, 0, 5], [4, 2, 1]
    q = torch.randn(8, 2, 4, generator=gen, dtype=torch.float64)
    k, v = (torch.randn(7, 2, 4, generator=gen, dtype=torch.float64) for _ in range(2))
    out = varlen_attention(q, k, v, cu(sizes_q), cu_seqlens_k=cu(sizes_k))
    starts_q, starts_k = cu(sizes_q).tolist(), cu(sizes_k).tolist()
    for i in range(3):
        sq, sk = slice(starts_q[i], starts_q[i + 1]), slice(starts_k[i], starts_k[i + 1])
        torch.testing.assert_close(out[sq], segment_attention(q[sq], k[sk], v[sk]))


def test_tokens_never_see_other_segments(gen):
    cu_seqlens = cu([4, 5])
    q, k, v = (torch.randn(9, 1, 4, generator=gen) for _ in range(3))
    before = varlen_attention(q, k, v, cu_seqlens)
    v2 = v.clone()
    v2[4:] += 10.0
    after = varlen_attention(q, k, v2, cu_seqlens)
    torch.testing.assert_close(before[:4], after[:4])
    assert not torch.allclose(before[4:], after[4:])


@pytest.mark.parametrize(
    "cu_seqlens,message",
    [
        (torch.tensor([0, 5, 3, 9], dtype=torch.int32), "non-decreasing"),
        (torch.tensor([0, 4, 8], dtype=torch.int32), "must end at the number of packed tokens T=9"),
        (torch.tensor([1, 4, 9], dtype=torch.int32), "must start at 0"),
        (torch.tensor([0.0, 9.0]), "must be int32"),
        (torch.tensor([[0, 9]], dtype=torch.int32), r"cu_seqlens must be \[N\+1\]"),
    ],
)
def test_bad_cu_seqlens(cu_seqlens, message):
    x = torch.randn(9, 2, 4)
    with pytest.raises(ValueError, match=message):
        varlen_attention(x, x, x, cu_seqlens)


def test_bad_tensors():
    x, cu_seqlens = torch.randn(9, 2, 4), cu([9])
    with pytest.raises(ValueError, match="mismatched heads"):
        varlen_attention(x, torch.randn(9, 3, 4), torch.randn(9, 3, 4), cu_seqlens)
    with pytest.raises(ValueError, match=r"q must be \[T, H, D\]"):
        varlen_attention(x[None], x, x, cu_seqlens)
    with pytest.raises(ValueError, match="k contains NaN"):
        varlen_attention(x, torch.full_like(x, float("nan")), x, cu_seqlens)
