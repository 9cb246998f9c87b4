"""AttentionPool (ABMIL gated attention, ACMIL multi-branch) against a per-bag naive formula."""

from __future__ import annotations

import pytest
import torch

from core.nn import AttentionPool

D, HIDDEN = 6, 5
LENGTHS = [4, 1, 7]
CU_SEQLENS = torch.tensor([0, 4, 5, 12], dtype=torch.int32)


def randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def naive_scores(pool: AttentionPool, h: torch.Tensor, gated: bool) -> torch.Tensor:
    """``w_kᵀ (tanh(V h) ⊙ sigmoid(U h))`` (gated) or ``w_kᵀ tanh(V h)``, written out, ``[T, K]``."""
    hidden = torch.tanh(h @ pool.attention_V.weight.T + pool.attention_V.bias)
    if gated:
        assert pool.attention_U is not None
        hidden = hidden * torch.sigmoid(h @ pool.attention_U.weight.T + pool.attention_U.bias)
    return hidden @ pool.attention_w.weight.T


@pytest.mark.parametrize(("gated", "branches"), [(True, 1), (False, 1), (True, 3)])
def test_packed_matches_per_bag_softmax(gen: torch.Generator, gated: bool, branches: int) -> None:
    pool = AttentionPool(D, HIDDEN, n_branches=branches, gated=gated).double()
    h = randn(gen, sum(LENGTHS), D)
    pooled, weights = pool(h, CU_SEQLENS)
    assert pooled.shape == (3, branches, D) and weights.shape == (sum(LENGTHS), branches)
    for bag, (scores, inst) in enumerate(
        zip(naive_scores(pool, h, gated).split(LENGTHS), h.split(LENGTHS), strict=True)
    ):
        a = torch.softmax(scores, dim=0)  # [n, K]
        start = int(CU_SEQLENS[bag])
        torch.testing.assert_close(weights[start : start + len(inst)], a, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(pooled[bag], a.T @ inst, rtol=1e-12, atol=1e-12)


def test_masked_instances_get_zero_weight_and_the_rest_renormalise(gen: torch.Generator) -> None:
    pool = AttentionPool(D, HIDDEN, n_branches=2).double()
    h = randn(gen, sum(LENGTHS), D)
    mask = torch.rand(sum(LENGTHS), 2, generator=gen) < 0.6
    mask[4] = torch.tensor([True, False])  # bag 1 (one instance) is hidden from branch 1
    mask[0] = True
    mask[5] = True
    pooled, weights = pool(h, CU_SEQLENS, mask=mask)
    assert (weights[~mask] == 0).all() and (weights[mask] > 0).all()
    sums = torch.stack([w.sum(0) for w in weights.split(LENGTHS)])  # [N, K]
    torch.testing.assert_close(sums, torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]]).double())
    torch.testing.assert_close(pooled[1, 1], torch.zeros(D, dtype=torch.float64))
    scores = naive_scores(pool, h, gated=True).masked_fill(~mask, float("-inf"))
    a = torch.softmax(scores[5:], dim=0)
    torch.testing.assert_close(pooled[2], a.T @ h[5:], rtol=1e-12, atol=1e-12)


def test_padded_batch_agrees_with_packed_bags(gen: torch.Generator) -> None:
    pool = AttentionPool(D, HIDDEN, n_branches=2).double()
    h = randn(gen, sum(LENGTHS), D)
    padded = randn(gen, 3, max(LENGTHS), D)  # random padding rows: must not leak in
    valid = torch.arange(max(LENGTHS)) < torch.tensor(LENGTHS)[:, None]
    padded[valid] = h
    pooled_packed, weights_packed = pool(h, CU_SEQLENS)
    pooled_padded, weights_padded = pool(padded, mask=valid)
    torch.testing.assert_close(pooled_padded, pooled_packed, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(weights_padded[valid], weights_packed, rtol=1e-12, atol=1e-12)
    assert (weights_padded[~valid] == 0).all()


def test_gradients_reach_every_parameter_and_the_instances(gen: torch.Generator) -> None:
    pool = AttentionPool(D, HIDDEN, n_branches=3, dropout=0.25).double()
    h = randn(gen, sum(LENGTHS), D).requires_grad_()
    pooled, _ = pool(h, CU_SEQLENS)
    pooled.square().sum().backward()
    for name, p in [*pool.named_parameters(), ("h", h)]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_bad_input_raises_clear_errors(gen: torch.Generator) -> None:
    pool = AttentionPool(D, HIDDEN, n_branches=2)
    h = torch.randn(sum(LENGTHS), D, generator=gen)
    with pytest.raises(ValueError, match=r"in_dim=6"):
        pool(torch.randn(12, D + 1), CU_SEQLENS)
    with pytest.raises(ValueError, match="needs cu_seqlens"):
        pool(h)
    with pytest.raises(ValueError, match="needs none"):
        pool(h.view(3, 4, D), CU_SEQLENS)
    with pytest.raises(ValueError, match=r"mask must be boolean \(12,\) or \(12, 2\)"):
        pool(h, CU_SEQLENS, mask=torch.ones(12, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="must end at the number of packed tokens"):
        pool(h, torch.tensor([0, 4, 11], dtype=torch.int32))
