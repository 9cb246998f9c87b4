"""MultiHeadAttention against torch.nn.MultiheadAttention, Shaw's explicit relative attention and
per-segment dense attention."""

from __future__ import annotations

import pytest
import torch

from core.nn import MultiHeadAttention, key_padding_to_attention_mask
from core.ops import causal_mask
from core.ops.naive import shaw_relative_logits, softmax_attention
from tests.core.nn.reference import merge_heads, split_heads, torch_attention_twin

B, L, S, D_MODEL, HEADS = 2, 7, 5, 16, 4


def randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def random_valid(gen: torch.Generator, batch: int, length: int) -> torch.Tensor:
    """Key-padding mask [B, S] (True = real) with the first key always real."""
    valid = torch.rand(batch, length, generator=gen) < 0.7
    valid[:, 0] = True
    return valid


@pytest.mark.parametrize("kv_dim", [None, 12])
def test_matches_torch_mha_with_key_padding(gen: torch.Generator, kv_dim: int | None) -> None:
    mha = MultiHeadAttention(D_MODEL, HEADS, kv_dim=kv_dim).double()
    twin = torch_attention_twin(mha)
    x = randn(gen, B, L, D_MODEL)
    context = x if kv_dim is None else randn(gen, B, S, kv_dim)
    valid = random_valid(gen, B, context.shape[1])
    ours = mha(x, None if kv_dim is None else context, mask=key_padding_to_attention_mask(valid))
    theirs, _ = twin(x, context, context, key_padding_mask=~valid, need_weights=False)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


def test_matches_torch_mha_with_per_head_mask_and_causal(gen: torch.Generator) -> None:
    mha = MultiHeadAttention(D_MODEL, HEADS).double()
    twin = torch_attention_twin(mha)
    x = randn(gen, B, L, D_MODEL)
    mask = torch.rand(B, HEADS, L, L, generator=gen) < 0.6
    mask[..., 0] = True  # every query keeps key 0, which the causal mask never hides
    ours = mha(x, mask=mask, causal=True)
    allowed = (mask & causal_mask(L, L)).flatten(0, 1)  # torch wants [B·H, L, S], True = hidden
    theirs, _ = twin(x, x, x, attn_mask=~allowed, need_weights=False)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


def test_attn_bias_is_added_to_the_scaled_logits(gen: torch.Generator) -> None:
    mha = MultiHeadAttention(D_MODEL, HEADS, d_head=6).double()  # H·d_head = 24 ≠ d_model
    x = randn(gen, B, L, D_MODEL)
    bias = randn(gen, 1, HEADS, L, L)
    q, k, v = split_heads(mha, x)
    expected = merge_heads(mha, softmax_attention(q, k, v, bias=bias))
    torch.testing.assert_close(mha(x, attn_bias=bias), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("relative", "causal"),
    [("bidirectional", False), ("bidirectional", True), ("causal", True), ("causal", False)],
)
def test_relative_matches_shaw_explicit(gen: torch.Generator, relative: str, causal: bool) -> None:
    """K = 3 < L − 1, so distances are clipped; relative="causal" is causal even with causal=False."""
    mha = MultiHeadAttention(D_MODEL, HEADS, max_relative_position=3, relative=relative).double()
    assert mha.rel_emb is not None
    assert mha.rel_emb.shape == (HEADS, 4 if relative == "causal" else 7, D_MODEL // HEADS)
    x = randn(gen, B, L, D_MODEL)
    valid = random_valid(gen, B, L)
    q, k, v = split_heads(mha, x)
    allowed = valid[:, None, None, :]
    if causal or relative == "causal":
        allowed = allowed & causal_mask(L, L)
    rel = shaw_relative_logits(q, mha.rel_emb, causal=relative == "causal")
    scale = mha.d_head**-0.5  # the relative term enters the logits before the scaling
    expected = merge_heads(mha, softmax_attention(q, k, v, allowed, bias=rel * scale))
    ours = mha(x, mask=key_padding_to_attention_mask(valid), causal=causal)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("causal", [False, True])
def test_varlen_equals_per_segment_dense(gen: torch.Generator, causal: bool) -> None:
    mha = MultiHeadAttention(D_MODEL, HEADS).double()
    lengths = [3, 0, 5, 1]
    cu_seqlens = torch.tensor([0, 3, 3, 8, 9], dtype=torch.int32)
    x = randn(gen, sum(lengths), D_MODEL)
    packed = mha(x, cu_seqlens=cu_seqlens, causal=causal)
    dense = torch.cat([mha(seg[None], causal=causal)[0] for seg in x.split(lengths) if len(seg)])
    torch.testing.assert_close(packed, dense, rtol=1e-10, atol=1e-10)


def test_varlen_cross_attention_pairs_segments(gen: torch.Generator) -> None:
    mha = MultiHeadAttention(D_MODEL, HEADS, kv_dim=12).double()
    q_lengths, k_lengths = [2, 4, 1], [3, 1, 5]
    x, context = randn(gen, 7, D_MODEL), randn(gen, 9, 12)
    cu_q = torch.tensor([0, 2, 6, 7], dtype=torch.int32)
    cu_k = torch.tensor([0, 3, 4, 9], dtype=torch.int32)
    packed = mha(x, context, cu_seqlens=cu_q, context_cu_seqlens=cu_k)
    pairs = zip(x.split(q_lengths), context.split(k_lengths), strict=True)
    dense = torch.cat([mha(xs[None], cs[None])[0] for xs, cs in pairs])
    torch.testing.assert_close(packed, dense, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("packed", [False, True])
def test_separate_value_input_matches_torch_mha(gen: torch.Generator, packed: bool) -> None:
    """DSVT's form: positions added to queries and keys, values from the features alone."""
    mha = MultiHeadAttention(D_MODEL, HEADS).double()
    twin = torch_attention_twin(mha)
    features, positions = randn(gen, B, L, D_MODEL), randn(gen, B, L, D_MODEL)
    with_pos = features + positions
    theirs, _ = twin(with_pos, with_pos, features, need_weights=False)
    if packed:
        cu_seqlens = torch.arange(0, B * L + 1, L, dtype=torch.int32)
        flat = mha(with_pos.flatten(0, 1), value=features.flatten(0, 1), cu_seqlens=cu_seqlens)
        ours = flat.unflatten(0, (B, L))
    else:
        ours = mha(with_pos, value=features)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="keys' input shape"):
        mha(with_pos, value=features[:, :-1])


def test_dropout_acts_in_training_only(gen: torch.Generator) -> None:
    mha = MultiHeadAttention(D_MODEL, HEADS, dropout=0.5).double()
    x = randn(gen, B, L, D_MODEL)
    assert not torch.allclose(mha(x), mha(x))
    mha.eval()
    torch.testing.assert_close(mha(x), mha(x))


@pytest.mark.parametrize("packed", [False, True])
def test_gradients_reach_every_parameter(gen: torch.Generator, packed: bool) -> None:
    relative = None if packed else 2
    mha = MultiHeadAttention(D_MODEL, HEADS, max_relative_position=relative).double()
    if packed:
        out = mha(randn(gen, 6, D_MODEL), cu_seqlens=torch.tensor([0, 4, 6], dtype=torch.int32))
    else:
        out = mha(randn(gen, B, L, D_MODEL))
    out.square().sum().backward()
    for name, p in mha.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_bad_input_raises_clear_errors(gen: torch.Generator) -> None:
    mha = MultiHeadAttention(D_MODEL, HEADS)
    x = torch.randn(B, L, D_MODEL, generator=gen)
    with pytest.raises(ValueError, match=r"x must be \[B, L, d_model\] with 16 features"):
        mha(torch.randn(B, L, D_MODEL + 1))
    with pytest.raises(ValueError, match="does not broadcast"):
        mha(x, mask=torch.ones(B, 3, L, dtype=torch.bool))
    with pytest.raises(ValueError, match="boolean"):
        mha(x, mask=torch.ones(L, L))
    with pytest.raises(ValueError, match="for dense input"):
        mha(x[0], cu_seqlens=torch.tensor([0, L], dtype=torch.int32), mask=torch.ones(L, L) > 0)
    with pytest.raises(ValueError, match=r"x must be \[T, d_model\]"):
        mha(x, cu_seqlens=torch.tensor([0, L], dtype=torch.int32))
    with pytest.raises(ValueError, match="not divisible"):
        MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match="pass context"):
        MultiHeadAttention(D_MODEL, HEADS, kv_dim=8)(x)
    with pytest.raises(ValueError, match=r"key-padding mask must be boolean \[B, S\]"):
        key_padding_to_attention_mask(torch.ones(B, 1, L, dtype=torch.bool))
    relative = MultiHeadAttention(D_MODEL, HEADS, max_relative_position=2)
    with pytest.raises(ValueError, match="need self-attention"):
        relative(x, x)
    with pytest.raises(ValueError, match="does not broadcast"):
        relative(x, mask=torch.ones(3, L, dtype=torch.bool), causal=True)
    with pytest.raises(ValueError, match="dense"):
        relative(x[0], cu_seqlens=torch.tensor([0, L], dtype=torch.int32))
