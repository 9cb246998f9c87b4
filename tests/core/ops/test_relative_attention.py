import importlib

import pytest
import torch

from core.ops import attention, causal_mask, relative_attention
from core.ops.attention import attention_reference
from core.ops.naive import shaw_relative_logits, softmax_attention
from core.ops.relative_attention import relative_logits

# the module, not the function of the same name that core.ops exports
relative_module = importlib.import_module("core.ops.relative_attention")


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


def sdpa_with_relative_bias(q, k, v, rel_emb, causal, mask):
    """The formulation the blocked reference replaced: skewed logits as an SDPA bias, [B, H, L, L]."""
    scale = q.shape[-1] ** -0.5
    bias = relative_logits(q, rel_emb, causal) * scale
    return attention_reference(q, k, v, mask=mask, bias=bias, causal=causal, scale=scale)


def random_mask(gen: torch.Generator, kind: str, batch: int, heads: int, length: int):
    if kind == "none":
        return None
    if kind == "keys":  # key padding; batch 0 sees no key at all (its rows must come out zero)
        mask = torch.rand(batch, 1, 1, length, generator=gen) > 0.3
        mask[0] = False
        return mask
    if kind == "full":
        return torch.rand(batch, heads, length, length, generator=gen) > 0.3
    return torch.rand(length, length, generator=gen) > 0.5  # "2d": broadcast over batch and heads


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("length,max_rel", [(37, 36), (37, 5), (37, 0)])
@pytest.mark.parametrize("mask_kind", ["none", "keys", "full", "2d"])
@pytest.mark.parametrize("rows", [1, 5, 64])
def test_blocked_reference_matches_sdpa_with_relative_bias(
    gen, monkeypatch, causal, length, max_rel, mask_kind, rows
):
    """Output and all four gradients, fp32, against the bias formulation: unclipped (K = L − 1),
    clipped and K = 0 tables, every kind of mask, blocks of 1 and 5 query rows and one block."""
    monkeypatch.setattr(relative_module, "BLOCK_ROWS", rows)
    monkeypatch.setattr(relative_module, "MIN_BLOCK_ROWS", 1)
    batch, heads, dim = 2, 3, 8
    q, k, v = (torch.randn(batch, heads, length, dim, generator=gen) for _ in range(3))
    rel_emb = torch.randn(heads, max_rel + 1 if causal else 2 * max_rel + 1, dim, generator=gen)
    mask = random_mask(gen, mask_kind, batch, heads, length)
    weight = torch.randn(batch, heads, length, dim, generator=gen)
    results = []
    for fn in (relative_module.relative_attention_reference, sdpa_with_relative_bias):
        inputs = [t.clone().requires_grad_() for t in (q, k, v, rel_emb)]
        if fn is sdpa_with_relative_bias:
            out = fn(*inputs, causal, mask)
        else:
            out = fn(*inputs, causal=causal, mask=mask, scale=dim**-0.5)
        results.append([out, *torch.autograd.grad((out * weight).sum(), inputs)])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want)
    if mask_kind == "keys":
        assert not results[0][0][0].any()


def test_shared_table_gradient_sums_over_heads(gen):
    q, k, v = (torch.randn(1, 3, 6, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    shared = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    per_head = shared.detach().expand(3, 6, 4).clone().requires_grad_()
    (grad_shared,) = torch.autograd.grad(
        relative_attention(q, k, v, shared, causal=True).sum(), shared
    )
    (grad_heads,) = torch.autograd.grad(
        relative_attention(q, k, v, per_head, causal=True).sum(), per_head
    )
    torch.testing.assert_close(grad_shared, grad_heads.sum(0))


@pytest.mark.parametrize("causal", [False, True])
def test_saves_no_logits_for_backward(gen, causal):
    """What autograd keeps from the op is O(L·D) (q, k, v, the table, the output, the row
    log-sum-exp): no [B, H, L, L] tensor, which the bias formulation keeps several of."""
    batch, heads, length, dim = 1, 2, 256, 8
    q, k, v = (
        torch.randn(batch, heads, length, dim, generator=gen).requires_grad_() for _ in range(3)
    )
    rel_emb = torch.randn(heads, length if causal else 2 * length - 1, dim, generator=gen)
    sizes = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        relative_attention(q, k, v, rel_emb.requires_grad_(), causal=causal)
    assert sizes and max(sizes) < length * length
    assert sum(sizes) <= 6 * batch * heads * 2 * length * dim
