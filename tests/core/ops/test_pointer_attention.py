import sys

import pytest
import torch

from core.ops import pointer_attention

SCORES = sys.modules["core.ops.pointer_attention"]  # the package re-exports a same-named function


def formula_and_gradients(query, keys, v, out, gen):
    """Check ``out`` and its gradients against ``tanh(query + keys) @ v`` (plain autograd)."""
    expected = torch.tanh(query.unsqueeze(2) + keys.unsqueeze(1)) @ v
    torch.testing.assert_close(out, expected)
    weights = torch.randn(out.shape, generator=gen, dtype=out.dtype)
    got = torch.autograd.grad((out * weights).sum(), (query, keys, v))
    want = torch.autograd.grad((expected * weights).sum(), (query, keys, v))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


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
    monkeypatch.setattr(SCORES, "CHUNK_ELEMENTS", 40)  # several chunks
    query = torch.randn(batch, 3, 4, generator=gen, dtype=torch.float64).requires_grad_()
    keys = torch.randn(batch, 5, 4, generator=gen, dtype=torch.float64).requires_grad_()
    v = torch.randn(4, generator=gen, dtype=torch.float64).requires_grad_()
    formula_and_gradients(query, keys, v, pointer_attention(query, keys, v), gen)
    torch.autograd.gradcheck(lambda a, b, c: pointer_attention(a, b, c), (query, keys, v))


@pytest.mark.parametrize(
    ("steps", "points", "scale", "exponential"),
    [
        (13, 11, 1.0, True),  # many gates per exponential: 1 / (1 + e^{-2q} e^{-2k})
        (1, 11, 1.0, False),  # one decoding step: as many exponentials as gates, so the sigmoid
        (13, 11, 200.0, False),  # e^{-2q} e^{-2k} would overflow: the sigmoid, still exact
    ],
)
def test_both_gate_formulas_match_the_formula(gen, steps, points, scale, exponential):
    query = scale * torch.randn(3, steps, 8, generator=gen, dtype=torch.float64)
    keys = scale * torch.randn(3, points, 8, generator=gen, dtype=torch.float64)
    v = torch.randn(8, generator=gen, dtype=torch.float64)
    assert SCORES._exponentials_pay(query, keys) is exponential
    query, keys, v = (x.requires_grad_() for x in (query, keys, v))
    formula_and_gradients(query, keys, v, pointer_attention(query, keys, v), gen)


def test_fp32_gates_near_the_exponentials_range_stay_finite(gen):
    """fp32 exponentials overflow past e^88.7: ranges just inside and just outside the limit."""
    for largest in (40.0, 46.0):
        query = torch.full((2, 9, 4), largest / 2)
        keys = torch.full((2, 11, 4), -largest / 2)
        query[0, 0, 0], keys[1, 3, 2] = -largest / 2, largest / 2
        out = pointer_attention(query, keys, torch.ones(4))
        assert SCORES._exponentials_pay(query, keys) is (largest < 44)
        expected = torch.tanh(query.double().unsqueeze(2) + keys.double().unsqueeze(1)).sum(-1)
        torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_long_targets_are_split_into_blocks_of_several_rows(gen, monkeypatch):
    """At 52 decoder steps a row's gates pass the budget alone: chunks then split T, not the rows."""
    monkeypatch.setattr(SCORES, "CHUNK_ELEMENTS", 52 * 11 * 4)  # one row of all steps
    monkeypatch.setattr(SCORES, "MIN_CHUNK_ROWS", 4)
    query = torch.randn(10, 52, 4, generator=gen, dtype=torch.float64).requires_grad_()
    keys = torch.randn(10, 11, 4, generator=gen, dtype=torch.float64).requires_grad_()
    v = torch.randn(4, generator=gen, dtype=torch.float64).requires_grad_()
    chunks = SCORES._chunks(SCORES._Gates.of(query, keys))
    assert all(rows.stop - rows.start == 4 for rows, _ in chunks[:-1])
    covered = torch.zeros(10, 52, dtype=torch.int64)
    for rows, steps in chunks:
        covered[rows, steps] += 1
    assert (covered == 1).all()
    formula_and_gradients(query, keys, v, pointer_attention(query, keys, v), gen)


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
