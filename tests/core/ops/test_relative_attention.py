import pytest
import torch

from core.ops import attention, causal_mask, relative_attention
from core.ops.naive import shaw_relative_logits, softmax_attention
from core.ops.relative_attention import relative_logits


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("length,max_rel", [(1, 0), (6, 2), (9, 8), (5, 12)])
def test_skewed_logits_equal_shaw(gen, causal, length, max_rel):
    rows = max_rel + 1 if causal else 2 * max_rel + 1
    q = torch.randn(2, 3, length, 4, generator=gen, dtype=torch.float64)
    rel_emb = torch.randn(3, rows, 4, generator=gen, dtype=torch.float64)
    skewed, shaw = relative_logits(q, rel_emb, causal), shaw_relative_logits(q, rel_emb, causal)
    visible = (
        causal_mask(length, length) if causal else torch.ones(length, length, dtype=torch.bool)
    )
    torch.testing.assert_close(skewed[..., visible], shaw[..., visible])


@pytest.mark.parametrize("causal", [False, True])
def test_matches_naive_attention_and_grads(gen, causal):
    length, max_rel, heads = 7, 3, 2
    rows = max_rel + 1 if causal else 2 * max_rel + 1
    tensors = [
        torch.randn(1, heads, length, 4, generator=gen, dtype=torch.float64) for _ in range(3)
    ]
    rel_emb = torch.randn(heads, rows, 4, generator=gen, dtype=torch.float64)
    mask = torch.rand(1, 1, length, length, generator=gen) > 0.2
    q, k, v = (t.requires_grad_() for t in tensors)
    rel_emb.requires_grad_()
    out = relative_attention(q, k, v, rel_emb, causal=causal, mask=mask)
    allowed = mask & causal_mask(length, length) if causal else mask
    scale = 4**-0.5
    expected = softmax_attention(
        q, k, v, allowed, bias=shaw_relative_logits(q, rel_emb, causal) * scale
    )
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v, rel_emb))
    grads_expected = torch.autograd.grad(expected.square().sum(), (q, k, v, rel_emb))
    for got, want in zip(grads, grads_expected, strict=True):
        torch.testing.assert_close(got, want)


def test_zero_embeddings_reduce_to_plain_attention(gen):
    q, k, v = (torch.randn(2, 2, 5, 8, generator=gen) for _ in range(3))
    out = relative_attention(q, k, v, torch.zeros(9, 8), causal=False)
    torch.testing.assert_close(out, attention(q, k, v))


def test_shared_embedding_rows_broadcast_over_heads(gen):
    q, k, v = (torch.randn(1, 3, 5, 4, generator=gen) for _ in range(3))
    shared = torch.randn(5, 4, generator=gen)
    out = relative_attention(q, k, v, shared, causal=False)
    torch.testing.assert_close(
        out, relative_attention(q, k, v, shared.expand(3, 5, 4), causal=False)
    )


@pytest.mark.parametrize(
    "rel_emb,kwargs,message",
    [
        (torch.randn(2, 4, 8), {}, "odd number of rows"),
        (torch.randn(3, 5, 8), {}, "mismatched heads"),
        (torch.randn(2, 5, 4), {}, "mismatched head dims"),
        (torch.randn(2, 5, 8), {"k": torch.randn(1, 2, 6, 8)}, "query/key lengths"),
        (torch.full((2, 5, 8), float("nan")), {}, "rel_emb contains NaN"),
        (torch.randn(1, 2, 5, 8), {}, r"rel_emb must be \[H, R, D\]"),
    ],
)
def test_bad_input(rel_emb, kwargs, message):
    q = torch.randn(1, 2, 5, 8)
    k, v = (
        kwargs.get("k", torch.randn(1, 2, 5, 8)),
        torch.randn(1, 2, kwargs.get("k", q).shape[2], 8),
    )
    with pytest.raises(ValueError, match=message):
        relative_attention(q, k, v, rel_emb)
