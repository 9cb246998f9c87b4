"""Redistribution: rows still sum to 1, exactly p of the sink weight moves, masked keys stay 0,
p = 0 changes nothing, and the module's output becomes ``weights @ v`` of the new weights."""

from __future__ import annotations

import pytest
import torch

from core.inspect import Redistribution, record, redistribute
from core.nn import MultiHeadAttention, PointerAttention
from tests.core.inspect.naive import heads, softmax_weights

B, L, D_MODEL, H = 2, 11, 16, 4


def masked_rows(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    allowed = torch.rand(3, 2, 5, 8, generator=gen) < 0.7
    allowed[..., 0] = True
    logits = torch.randn(3, 2, 5, 8, generator=gen, dtype=torch.float64)
    return torch.softmax(logits.masked_fill(~allowed, float("-inf")), -1), allowed


@pytest.mark.parametrize("fraction", [0.0, 0.3, 1.0])
def test_moves_exactly_p_of_the_sink_weight(gen: torch.Generator, fraction: float) -> None:
    weights, allowed = masked_rows(gen)
    sink = torch.zeros(8, dtype=torch.bool)
    sink[[0, 5]] = True
    new = redistribute(weights, sink, fraction)
    torch.testing.assert_close(new.sum(-1), torch.ones_like(new.sum(-1)))
    sink_before, sink_after = weights[..., sink].sum(-1), new[..., sink].sum(-1)
    torch.testing.assert_close(sink_after, (1 - fraction) * sink_before)
    assert new[~allowed].abs().max() == 0
    rest = torch.where(sink, 0.0, weights).sum(-1, keepdim=True)  # weight outside the sinks
    grown = weights * (1 + fraction * sink_before[..., None] / rest)
    torch.testing.assert_close(new, torch.where(sink, (1 - fraction) * weights, grown))
    if fraction == 0.0:
        assert torch.equal(new, weights)


def test_a_row_with_only_sinks_is_left_alone(gen: torch.Generator) -> None:
    weights = torch.tensor([[0.0, 1.0, 0.0], [0.2, 0.5, 0.3]], dtype=torch.float64)
    sink = torch.tensor([False, True, False])
    new = redistribute(weights, sink, 0.5)
    torch.testing.assert_close(new[0], weights[0])  # nothing outside the sink to give to
    # 0.25 of key 1's 0.5 moves to keys 0 and 2 in the ratio 0.2 : 0.3
    torch.testing.assert_close(new[1], torch.tensor([0.3, 0.25, 0.45], dtype=torch.float64))


def test_module_output_uses_the_redistributed_weights(gen: torch.Generator) -> None:
    mha = MultiHeadAttention(D_MODEL, H).eval()
    x = torch.randn(B, L, D_MODEL, generator=gen)
    chosen = Redistribution(0.6, heads={"": [1, 3]}, sink_keys=[0])
    with torch.no_grad():
        with record(mha, "weights", redistribution=chosen) as recording:
            ours = mha(x, causal=True)
        q, k, v = heads(mha, x)
        causal = torch.ones(L, L, dtype=torch.bool).tril()
        weights = softmax_weights(q, k, allowed=causal)
        # the formula, by hand, on heads 1 and 3: sink = key 0
        on_sink = weights[:, [1, 3], :, :1]
        others = weights[:, [1, 3], :, 1:]
        rest = others.sum(-1, keepdim=True)
        gain = torch.where(rest > 0, 0.6 * on_sink / rest.clamp_min(1e-300), 0.0)
        keep = torch.where(rest > 0, 0.4, 1.0)
        expected = weights.clone()
        expected[:, [1, 3]] = torch.cat([on_sink * keep, others * (1 + gain)], -1)
        out = mha.out_proj((expected @ v.double()).transpose(1, 2).flatten(-2).float())
    torch.testing.assert_close(torch.stack(recording.weights[""][0].weights).double(), expected)
    scale = out.abs().max()
    assert (ours - out).abs().max() <= 1e-4 * scale
    assert not torch.allclose(ours, mha(x, causal=True), atol=1e-3)  # it did change something


def test_zero_fraction_is_a_no_op(gen: torch.Generator) -> None:
    mha = MultiHeadAttention(D_MODEL, H).eval()
    x = torch.randn(B, L, D_MODEL, generator=gen)
    with torch.no_grad():
        plain = mha(x)
        with record(mha, redistribution=Redistribution(0.0)):
            ours = mha(x)
    assert (ours - plain).abs().max() <= 1e-4 * plain.abs().max()


def test_detected_sinks_are_the_heavy_columns(gen: torch.Generator) -> None:
    weights = torch.softmax(torch.randn(1, 1, 6, 5, generator=gen, dtype=torch.float64), -1)
    weights = 0.3 * weights
    weights[..., 2] += 0.7  # key 2 gets ≥ 0.7 from every query: a sink
    rule = Redistribution(0.5)
    sink = rule.sinks(rule.chosen_heads("layer", 1), 5, weights.mean(2))
    assert sink.flatten().tolist() == [False, False, True, False, False]


def test_head_patterns_and_errors() -> None:
    rule = Redistribution(0.5, heads={"encoder.layers.*.self_attn": [0, 2]})
    assert rule.chosen_heads("encoder.layers.3.self_attn", 4).tolist() == [1, 0, 1, 0]
    assert rule.chosen_heads("decoder.layers.0.self_attn", 4) is None
    with pytest.raises(ValueError, match=r"head 2 .* has 2 heads"):
        rule.chosen_heads("encoder.layers.0.self_attn", 2)
    with pytest.raises(ValueError, match="fraction"):
        Redistribution(1.5)


def test_pointer_logits_follow_the_redistributed_weights(gen: torch.Generator) -> None:
    pointer = PointerAttention(6, 5, 8)
    keys = pointer.project_keys(torch.randn(B, 4, 6, generator=gen))
    state = torch.randn(B, 5, generator=gen)
    with torch.no_grad():
        plain = torch.softmax(pointer(state, keys), -1)
        with record(pointer, redistribution=Redistribution(0.5, sink_keys=[0])):
            logits = pointer(state, keys)
    weights = torch.softmax(logits, -1)
    torch.testing.assert_close(weights[:, 0], 0.5 * plain[:, 0])
    torch.testing.assert_close(weights.sum(-1), torch.ones(B))
