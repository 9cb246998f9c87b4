"""Transformer layers against torch.nn twins with copied weights; causality; varlen; stacks."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from core.nn import (
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    key_padding_to_attention_mask,
)
from core.nn.transformer import FeedForward, Residual
from tests.core.nn.reference import copy_attention

B, L, S, D_MODEL, HEADS, D_FF = 2, 6, 5, 16, 4, 24


def randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def copy_ffn_and_norms(
    dst: nn.Module, ffn: FeedForward, residuals: list[Residual | None], norm_names: list[str]
) -> None:
    dst.linear1.load_state_dict(ffn.linear1.state_dict())
    dst.linear2.load_state_dict(ffn.linear2.state_dict())
    for name, residual in zip(norm_names, residuals, strict=True):
        assert residual is not None
        getattr(dst, name).load_state_dict(residual.norm.state_dict())


def perturb_norms(module: nn.Module, gen: torch.Generator) -> None:
    """LayerNorms start as the identity affine map; make them random so a mix-up shows."""
    with torch.no_grad():
        for norm in (m for m in module.modules() if isinstance(m, nn.LayerNorm)):
            norm.weight.copy_(1 + 0.3 * randn(gen, *norm.weight.shape))
            norm.bias.copy_(0.3 * randn(gen, *norm.bias.shape))


@pytest.mark.parametrize(("norm_first", "activation"), [(False, "relu"), (True, "gelu")])
def test_encoder_layer_matches_torch(
    gen: torch.Generator, norm_first: bool, activation: str
) -> None:
    ours = TransformerEncoderLayer(
        D_MODEL, HEADS, D_FF, dropout=0.0, activation=activation, norm_first=norm_first
    ).double()
    perturb_norms(ours, gen)
    twin = nn.TransformerEncoderLayer(
        D_MODEL,
        HEADS,
        D_FF,
        dropout=0.0,
        activation=activation,
        batch_first=True,
        norm_first=norm_first,
    ).double()
    copy_attention(twin.self_attn, ours.self_attn)
    copy_ffn_and_norms(twin, ours.ffn, [ours.attn_residual, ours.ffn_residual], ["norm1", "norm2"])
    x = randn(gen, B, L, D_MODEL)
    valid = torch.ones(B, L, dtype=torch.bool)
    valid[1, 4:] = False
    expected = twin(x, src_key_padding_mask=~valid)
    got = ours(x, mask=key_padding_to_attention_mask(valid))
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(gen: torch.Generator, norm_first: bool) -> None:
    ours = TransformerDecoderLayer(D_MODEL, HEADS, D_FF, dropout=0.0, norm_first=norm_first)
    ours = ours.double()
    perturb_norms(ours, gen)
    twin = nn.TransformerDecoderLayer(
        D_MODEL, HEADS, D_FF, dropout=0.0, batch_first=True, norm_first=norm_first
    ).double()
    copy_attention(twin.self_attn, ours.self_attn)
    assert ours.cross_attn is not None
    copy_attention(twin.multihead_attn, ours.cross_attn)
    residuals = [ours.attn_residual, ours.cross_residual, ours.ffn_residual]
    copy_ffn_and_norms(twin, ours.ffn, residuals, ["norm1", "norm2", "norm3"])
    x, memory = randn(gen, B, L, D_MODEL), randn(gen, B, S, D_MODEL)
    memory_valid = torch.ones(B, S, dtype=torch.bool)
    memory_valid[0, 3:] = False
    future = torch.ones(L, L, dtype=torch.bool).triu(1)
    expected = twin(x, memory, tgt_mask=future, memory_key_padding_mask=~memory_valid)
    got = ours(x, memory, memory_mask=key_padding_to_attention_mask(memory_valid))
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("relative", "cross_attention"), [(None, True), (3, True), (3, False), (None, False)]
)
def test_decoder_output_ignores_future_tokens(
    gen: torch.Generator, relative: int | None, cross_attention: bool
) -> None:
    decoder = TransformerDecoder(
        partial(
            TransformerDecoderLayer,
            D_MODEL,
            HEADS,
            D_FF,
            dropout=0.0,
            norm_first=True,
            max_relative_position=relative,
            cross_attention=cross_attention,
        ),
        num_layers=2,
    ).double()
    memory = randn(gen, B, S, D_MODEL) if cross_attention else None
    x = randn(gen, B, L, D_MODEL)
    changed = x.clone()
    changed[:, 4:] = randn(gen, B, L - 4, D_MODEL)
    before, after = decoder(x, memory), decoder(changed, memory)
    torch.testing.assert_close(before[:, :4], after[:, :4], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(before[:, 4:], after[:, 4:])


def test_encoder_layer_varlen_equals_per_segment_dense(gen: torch.Generator) -> None:
    layer = TransformerEncoderLayer(D_MODEL, HEADS, D_FF, dropout=0.0).double()
    lengths = [4, 1, 6]
    x = randn(gen, sum(lengths), D_MODEL)
    cu_seqlens = torch.tensor([0, 4, 5, 11], dtype=torch.int32)
    dense = torch.cat([layer(seg[None])[0] for seg in x.split(lengths)])
    torch.testing.assert_close(layer(x, cu_seqlens=cu_seqlens), dense, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_stack_is_fresh_layers_then_final_norm_when_pre_norm(
    gen: torch.Generator, norm_first: bool
) -> None:
    factory = partial(TransformerEncoderLayer, D_MODEL, HEADS, D_FF, 0.0, norm_first=norm_first)
    encoder = TransformerEncoder(factory, num_layers=3).double()
    assert isinstance(encoder.norm, nn.LayerNorm) == norm_first
    first, second = encoder.layers[0].ffn.linear1.weight, encoder.layers[1].ffn.linear1.weight
    assert not torch.equal(first, second), "layers must not share their initial weights"
    perturb_norms(encoder, gen)
    x = randn(gen, B, L, D_MODEL)
    expected = x
    for layer in encoder.layers:
        expected = layer(expected)
    torch.testing.assert_close(encoder(x), encoder.norm(expected), rtol=0, atol=0)


def test_stacks_backpropagate_to_every_parameter(gen: torch.Generator) -> None:
    encoder = TransformerEncoder(
        partial(TransformerEncoderLayer, D_MODEL, HEADS, D_FF, max_relative_position=3), 2
    ).double()
    decoder = TransformerDecoder(
        partial(TransformerDecoderLayer, D_MODEL, HEADS, D_FF, norm_first=True), 2
    ).double()
    memory = encoder(randn(gen, B, S, D_MODEL))
    decoder(randn(gen, B, L, D_MODEL), memory).square().sum().backward()
    for module in (encoder, decoder):
        for name, p in module.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_bad_input_raises_clear_errors(gen: torch.Generator) -> None:
    decoder_layer = TransformerDecoderLayer(D_MODEL, HEADS)
    x = torch.randn(B, L, D_MODEL, generator=gen)
    with pytest.raises(ValueError, match="memory is required"):
        decoder_layer(x)
    with pytest.raises(ValueError, match="refused without it"):
        TransformerDecoderLayer(D_MODEL, HEADS, cross_attention=False)(x, x)
    with pytest.raises(ValueError, match="context must be"):
        decoder_layer(x, torch.randn(B, S, D_MODEL + 2))
    with pytest.raises(ValueError, match="x must be"):
        TransformerEncoderLayer(D_MODEL, HEADS)(torch.randn(B, L, 8))
    with pytest.raises(ValueError, match="activation must be one of"):
        TransformerEncoderLayer(D_MODEL, HEADS, activation="swish")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_layers"):
        TransformerEncoder(partial(TransformerEncoderLayer, D_MODEL, HEADS), num_layers=0)
