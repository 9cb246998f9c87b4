"""Recording: the kept weights equal softmax(QKᵀ/√d + bias) computed independently, outputs are
unchanged, nothing is recorded outside the context, packed inputs are per segment, limits raise."""

from __future__ import annotations

import pytest
import torch

import core.inspect.blocks
from core.inspect import WeightLimitError, WeightLimits, head_statistics, record
from core.nn import (
    AttentionPool,
    MultiHeadAttention,
    PointerAttention,
    TransformerEncoder,
    TransformerEncoderLayer,
)
from core.nn.attention import RECORDER
from core.ops.naive import shaw_relative_logits
from tests.core.inspect.naive import (
    bottom_right_causal,
    entropy,
    heads,
    softmax_weights,
)

B, L, S, D_MODEL, H = 2, 13, 9, 24, 3


def assert_same_output(ours: torch.Tensor, plain: torch.Tensor) -> None:
    """fp32 tolerance of DESIGN.md: max error ≤ 1e-4 of the output's scale."""
    scale = plain.abs().max()
    assert (ours - plain).abs().max() <= 1e-4 * scale, (ours - plain).abs().max() / scale


def kept(recording, layer: str = "") -> torch.Tensor:
    """The kept weights of the first batch of ``layer`` as ``[N, H, Lq, Lk]``."""
    return torch.stack(recording.weights[layer][0].weights)


def random_mask(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=gen) < 0.6


DENSE_CASES = ["plain", "key_padding", "per_head_mask", "bias", "causal", "cross_causal"]


@pytest.mark.parametrize("case", DENSE_CASES)
def test_dense_weights_equal_the_definition(gen: torch.Generator, case: str) -> None:
    mha = MultiHeadAttention(D_MODEL, H).eval()
    x = torch.randn(B, L, D_MODEL, generator=gen)
    context = torch.randn(B, S, D_MODEL, generator=gen) if case == "cross_causal" else None
    len_k = S if context is not None else L
    kwargs: dict = {}
    allowed, bias = None, None
    if case == "key_padding":
        valid = random_mask(gen, B, len_k)
        valid[:, 0] = True
        kwargs["mask"] = allowed = valid[:, None, None, :]
    elif case == "per_head_mask":  # some rows see no key at all
        kwargs["mask"] = allowed = random_mask(gen, B, H, L, len_k)
        allowed[0, 1, 2] = False
    elif case == "bias":
        bias = torch.randn(1, H, L, len_k, generator=gen)
        bias[..., 3] = float("-inf")  # a key hidden through the bias
        kwargs["attn_bias"] = bias
    elif case in ("causal", "cross_causal"):
        kwargs["causal"] = True
        allowed = bottom_right_causal(L, len_k)
    with torch.no_grad():
        plain = mha(x, context, **kwargs)
        with record(mha, "weights") as recording:
            ours = mha(x, context, **kwargs)
        q, k, _ = heads(mha, x, context)
        expected = softmax_weights(q, k, allowed=allowed, bias=bias)
    assert_same_output(ours, plain)
    torch.testing.assert_close(kept(recording).double(), expected, atol=1e-6, rtol=0)
    stats = recording.statistics()[""]
    visible = allowed if allowed is not None else torch.ones(1, dtype=torch.bool)
    if bias is not None:
        visible = bias > float("-inf")
    reference = head_statistics(expected, allowed=visible.expand_as(expected))
    torch.testing.assert_close(stats.entropy, reference.entropy, atol=1e-5, rtol=0)
    torch.testing.assert_close(stats.normalized_entropy, reference.normalized_entropy)
    torch.testing.assert_close(stats.topk_mass, reference.topk_mass)
    torch.testing.assert_close(stats.sink_score, reference.sink_score)
    assert torch.equal(stats.sink_key, reference.sink_key)
    assert stats.mean_distance.isnan().all() == (context is not None)


@pytest.mark.parametrize("relative", ["bidirectional", "causal"])
@pytest.mark.parametrize("causal", [False, True])
def test_relative_weights_equal_shaw(gen: torch.Generator, relative: str, causal: bool) -> None:
    mha = MultiHeadAttention(D_MODEL, H, max_relative_position=4, relative=relative).eval()
    x = torch.randn(B, L, D_MODEL, generator=gen)
    valid = random_mask(gen, B, L)
    valid[:, 0] = True
    mask = valid[:, None, None, :]
    with torch.no_grad():
        plain = mha(x, mask=mask, causal=causal)
        with record(mha, "weights") as recording:
            ours = mha(x, mask=mask, causal=causal)
        q, k, _ = heads(mha, x)
        causal_table = relative == "causal"
        allowed = mask & bottom_right_causal(L, L) if causal or causal_table else mask
        extra = shaw_relative_logits(q.double(), mha.rel_emb.double(), causal=causal_table)
        expected = softmax_weights(q, k, allowed=allowed, extra_logits=extra)
    assert_same_output(ours, plain)
    torch.testing.assert_close(kept(recording).double(), expected, atol=1e-6, rtol=0)


def test_blocks_of_queries_give_the_same_weights(gen: torch.Generator, monkeypatch) -> None:
    """A long sequence is cut into blocks of queries; the skewed relative term and the causal
    mask must line up across block borders."""
    monkeypatch.setattr(core.inspect.blocks, "BLOCK_ELEMENTS", B * H * L * 3)  # 3 queries a block
    mha = MultiHeadAttention(D_MODEL, H, max_relative_position=3).eval()
    x = torch.randn(B, L, D_MODEL, generator=gen)
    with torch.no_grad():
        plain = mha(x, causal=True)
        with record(mha, "weights") as recording:
            ours = mha(x, causal=True)
        q, k, _ = heads(mha, x)
        extra = shaw_relative_logits(q.double(), mha.rel_emb.double(), causal=False)
        expected = softmax_weights(q, k, allowed=bottom_right_causal(L, L), extra_logits=extra)
    assert_same_output(ours, plain)
    torch.testing.assert_close(kept(recording).double(), expected, atol=1e-6, rtol=0)
    distance = (torch.arange(L)[:, None] - torch.arange(L)[None, :]).abs().double()
    mean_distance = (expected * distance).sum(-1).mean((0, 2))
    torch.testing.assert_close(recording.statistics()[""].mean_distance, mean_distance)


@pytest.mark.parametrize("causal", [False, True])
def test_packed_is_recorded_per_segment(gen: torch.Generator, causal: bool) -> None:
    lengths = [5, 0, 17, 1, 40]  # an empty segment, a single token, two buckets of 16
    cu_seqlens = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    mha = MultiHeadAttention(D_MODEL, H).eval()
    x = torch.randn(sum(lengths), D_MODEL, generator=gen)
    with torch.no_grad():
        plain = mha(x, cu_seqlens=cu_seqlens, causal=causal)
        with record(mha, "weights") as recording:
            ours = mha(x, cu_seqlens=cu_seqlens, causal=causal)
    assert_same_output(ours, plain)
    segments = recording.weights[""][0].weights
    assert [w.shape[1] for w in segments] == lengths
    rows_entropy, rows_normalised = [], []
    for n, (start, weights) in enumerate(zip(cu_seqlens[:-1].tolist(), segments, strict=True)):
        if lengths[n] == 0:
            continue
        seg = x[start : start + lengths[n]][None]
        with torch.no_grad():
            q, k, _ = heads(mha, seg)
        allowed = bottom_right_causal(lengths[n], lengths[n]) if causal else None
        expected = softmax_weights(q, k, allowed=allowed)[0]
        torch.testing.assert_close(weights.double(), expected, atol=1e-6, rtol=0)
        keys = torch.arange(1, lengths[n] + 1) if causal else torch.full((lengths[n],), lengths[n])
        row_entropy = entropy(expected)  # [H, Ln]
        rows_entropy.append(row_entropy)
        several = keys > 1  # each row normalised by its own segment's number of keys
        rows_normalised.append(row_entropy[:, several] / keys[several].double().log())
    stats = recording.statistics()[""]
    torch.testing.assert_close(stats.entropy, torch.cat(rows_entropy, 1).mean(1))
    torch.testing.assert_close(stats.normalized_entropy, torch.cat(rows_normalised, 1).mean(1))


def test_packed_cross_attention(gen: torch.Generator) -> None:
    cu_q = torch.tensor([0, 3, 10], dtype=torch.int32)
    cu_k = torch.tensor([0, 6, 8], dtype=torch.int32)
    mha = MultiHeadAttention(D_MODEL, H).eval()
    x, context = torch.randn(10, D_MODEL, generator=gen), torch.randn(8, D_MODEL, generator=gen)
    with torch.no_grad():
        plain = mha(x, context, cu_seqlens=cu_q, context_cu_seqlens=cu_k)
        with record(mha, "weights") as recording:
            ours = mha(x, context, cu_seqlens=cu_q, context_cu_seqlens=cu_k)
        q, k, _ = heads(mha, x[None, 3:10], context[None, 6:8])
    assert_same_output(ours, plain)
    second = recording.weights[""][0].weights[1]
    torch.testing.assert_close(second.double(), softmax_weights(q, k)[0], atol=1e-6, rtol=0)
    assert recording.statistics()[""].mean_distance.isnan().all()  # no distance across sequences


def test_app_coordinates_give_the_mean_distance(gen: torch.Generator) -> None:
    mha = MultiHeadAttention(D_MODEL, H).eval()
    x = torch.randn(B, L, D_MODEL, generator=gen)
    sensors = torch.rand(B, L, 2, generator=gen) * 1000.0  # metres
    with torch.no_grad(), record(mha, "weights", positions=sensors) as recording:
        mha(x)
    weights = kept(recording).double()
    metres = torch.cdist(sensors.double(), sensors.double())[:, None]
    expected = (weights * metres).sum(-1).mean((0, 2))
    torch.testing.assert_close(recording.statistics()[""].mean_distance, expected)


def test_layer_names_come_from_the_model(gen: torch.Generator) -> None:
    encoder = TransformerEncoder(lambda: TransformerEncoderLayer(D_MODEL, H, dropout=0.0), 2)
    x = torch.randn(B, L, D_MODEL, generator=gen)
    with torch.no_grad(), record(encoder) as recording:
        encoder(x)
    names = list(recording.statistics())
    assert names == recording.layer_names(MultiHeadAttention)
    assert len(names) == 2 and all(name.endswith("self_attn") for name in names)


def test_nothing_is_recorded_outside_the_context(gen: torch.Generator) -> None:
    mha = MultiHeadAttention(D_MODEL, H).eval()
    x = torch.randn(B, L, D_MODEL, generator=gen)
    assert RECORDER.active is None
    with torch.no_grad():
        with record(mha, "weights") as recording:
            assert RECORDER.active is recording
            mha(x)
        assert RECORDER.active is None
        before = recording.statistics()[""]
        mha(x)
        mha(x, causal=True)
    assert len(recording.weights[""]) == 1
    assert torch.equal(recording.statistics()[""].entropy, before.entropy)
    assert not mha._forward_hooks and not mha._forward_pre_hooks


def test_recording_is_exited_on_error(gen: torch.Generator) -> None:
    mha = MultiHeadAttention(D_MODEL, H)
    with pytest.raises(ValueError, match="d_model"), record(mha):
        mha(torch.randn(B, L, D_MODEL + 1, generator=gen))
    assert RECORDER.active is None


def test_gradients_are_unchanged(gen: torch.Generator) -> None:
    mha = MultiHeadAttention(D_MODEL, H)
    x = torch.randn(B, L, D_MODEL, generator=gen)
    target = torch.randn(B, L, D_MODEL, generator=gen)
    grads = []
    for recording in (None, record(mha)):
        mha.zero_grad()
        if recording is None:
            out = mha(x, causal=True)
        else:
            with recording:
                out = mha(x, causal=True)
        ((out - target) ** 2).sum().backward()
        grads.append(mha.q_proj.weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-4)


def test_pointer_teacher_forced_and_step_calls(gen: torch.Generator) -> None:
    pointer = PointerAttention(6, 5, 8)
    keys = pointer.project_keys(torch.randn(B, 4, 6, generator=gen))
    states = torch.randn(B, 3, 5, generator=gen)
    mask = torch.ones(B, 4, dtype=torch.bool)
    mask[0, 2] = False
    with torch.no_grad():
        logits = pointer(states, keys, mask[:, None])
        with record(pointer, "weights") as recording:
            forced = pointer(states, keys, mask[:, None])
            steps = [pointer(states[:, t], keys, mask) for t in range(3)]  # one decoding
    torch.testing.assert_close(forced, logits)
    torch.testing.assert_close(torch.stack(steps, 1), logits)
    first, second = recording.weights[""]
    assert (first.steps, second.steps) == (1, 3)
    expected = torch.softmax(logits.double(), -1)
    for batch in (first, second):
        torch.testing.assert_close(torch.cat(batch.weights).double(), expected, atol=1e-6, rtol=0)
    assert recording.weights[""][0].weights[0][0, :, 2].abs().max() == 0  # masked key


def test_attention_pool_bags(gen: torch.Generator) -> None:
    pool = AttentionPool(D_MODEL, 10, n_branches=2).eval()
    cu_seqlens = torch.tensor([0, 4, 11, 12], dtype=torch.int32)
    h = torch.randn(12, D_MODEL, generator=gen)
    mask = random_mask(gen, 12, 2)
    mask[[0, 4, 11]] = True
    with torch.no_grad():
        pooled, weights = pool(h, cu_seqlens, mask=mask)
        with record(pool, "weights") as recording:
            ours, _ = pool(h, cu_seqlens, mask=mask)
    assert_same_output(ours, pooled)
    bags = recording.weights[""][0].weights
    assert [tuple(bag.shape) for bag in bags] == [(2, 1, 4), (2, 1, 7), (2, 1, 1)]
    for bag, (start, stop) in zip(bags, [(0, 4), (4, 11), (11, 12)], strict=True):
        torch.testing.assert_close(bag[:, 0], weights[start:stop].T)
    stats = recording.statistics()[""]
    torch.testing.assert_close(stats.top1_mass, stats.sink_score)  # one query: sink = top-1
    assert stats.mean_distance.isnan().all()


def test_weight_limits_raise_a_clear_error(gen: torch.Generator) -> None:
    mha = MultiHeadAttention(D_MODEL, H).eval()
    x = torch.randn(B, L, D_MODEL, generator=gen)
    limits = WeightLimits(max_batches=1, max_queries=L, max_layers=1)
    with torch.no_grad(), record(mha, "weights", limits=limits):
        mha(x)
        with pytest.raises(WeightLimitError, match="max_batches=1"):
            mha(x)
    longer = torch.randn(B, L + 1, D_MODEL, generator=gen)
    with (
        torch.no_grad(),
        record(mha, "weights", limits=limits),
        pytest.raises(WeightLimitError, match=f"max_queries={L}"),
    ):
        mha(longer)
    encoder = TransformerEncoder(lambda: TransformerEncoderLayer(D_MODEL, H), 2).eval()
    with (
        torch.no_grad(),
        record(encoder, "weights", limits=limits),
        pytest.raises(WeightLimitError, match="max_layers=1"),
    ):
        encoder(x)
    with torch.no_grad(), record(encoder, "stats", limits=limits) as recording:
        encoder(x)  # statistics only: no limit applies
    assert len(recording.statistics()) == 2
