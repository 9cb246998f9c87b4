"""Incremental decoding with KVCache equals the full causal forward, token by token."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from core.nn import KVCache, MultiHeadAttention, TransformerDecoder, TransformerDecoderLayer
from core.ops._checks import check_finite as check_finite_in_ops


def decoder(max_relative_position: int | None) -> TransformerDecoder:
    layer = partial(
        TransformerDecoderLayer,
        d_model=16,
        n_heads=2,
        d_ff=24,
        dropout=0.0,
        norm_first=True,
        cross_attention=False,
        max_relative_position=max_relative_position,
    )
    return TransformerDecoder(layer, num_layers=2).eval()


@pytest.mark.parametrize("max_relative_position", [None, 0, 3, 20])
def test_token_by_token_decoding_equals_the_full_forward(
    gen: torch.Generator, max_relative_position: int | None
) -> None:
    torch.manual_seed(0)
    model = decoder(max_relative_position)
    x = torch.randn(3, 9, 16, generator=gen)
    full = model(x)
    caches = model.new_caches(3, capacity=9)
    steps = [model(x[:, i : i + 1], caches=caches) for i in range(9)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert all(c.length == 9 for c in caches)


def test_a_primer_then_single_steps_equals_the_full_forward(gen: torch.Generator) -> None:
    torch.manual_seed(1)
    model = decoder(4)
    x = torch.randn(2, 11, 16, generator=gen)
    caches = model.new_caches(2, capacity=16)
    primed = model(x[:, :6], caches=caches)
    rest = [model(x[:, i : i + 1], caches=caches) for i in range(6, 11)]
    torch.testing.assert_close(torch.cat([primed, *rest], 1), model(x), atol=1e-5, rtol=1e-5)


def test_a_bidirectional_table_used_causally_decodes_the_same(gen: torch.Generator) -> None:
    torch.manual_seed(2)
    attn = MultiHeadAttention(8, 2, max_relative_position=2, relative="bidirectional").eval()
    x = torch.randn(2, 7, 8, generator=gen)
    cache = KVCache(2, 2, 7, 4)
    steps = [attn(x[:, i : i + 1], cache=cache) for i in range(7)]
    torch.testing.assert_close(torch.cat(steps, 1), attn(x, causal=True), atol=1e-5, rtol=1e-5)


def test_the_cache_refuses_overflow_and_wrong_shapes(gen: torch.Generator) -> None:
    cache = KVCache(1, 2, 3, 4)
    k = torch.randn(1, 2, 2, 4, generator=gen)
    cache.append(k, k)
    with pytest.raises(ValueError, match="capacity 3"):
        cache.append(k, k)
    with pytest.raises(ValueError, match="cache holds"):
        cache.append(torch.randn(1, 3, 1, 4, generator=gen), torch.randn(1, 3, 1, 4))
    with pytest.raises(ValueError, match="one cache per layer"):
        decoder(None)(torch.randn(1, 1, 16), caches=[cache])


def test_cross_attention_projects_the_memory_once_and_decodes_the_same(
    gen: torch.Generator,
) -> None:
    torch.manual_seed(3)
    layer = partial(TransformerDecoderLayer, d_model=16, n_heads=2, d_ff=24, dropout=0.0)
    model = TransformerDecoder(layer, num_layers=2).eval()
    x, memory = torch.randn(2, 6, 16, generator=gen), torch.randn(2, 5, 16, generator=gen)
    memory_mask = torch.tensor([[True] * 5, [True, True, True, False, False]])[:, None, None, :]
    full = model(x, memory, memory_mask=memory_mask)
    caches = model.new_caches(2, capacity=6)
    projections = 0

    def count(*_: object) -> None:
        nonlocal projections
        projections += 1

    hooks = [layer.cross_attn.k_proj.register_forward_hook(count) for layer in model.layers]
    steps = [
        model(x[:, i : i + 1], memory, memory_mask=memory_mask, caches=caches) for i in range(6)
    ]
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert projections == 2  # once per layer, not once per step
    assert all(c.context is not None and c.context[0].shape == (2, 2, 5, 8) for c in caches)


def test_the_cache_checks_each_new_entry_and_decoding_skips_the_old_ones(
    gen: torch.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MANYHEADS_DEBUG", raising=False)
    cache = KVCache(1, 2, 4, 4)
    good = torch.randn(1, 2, 1, 4, generator=gen)
    with pytest.raises(ValueError, match="k contains NaN or inf"):
        cache.append(good.clone().fill_(float("nan")), good)
    with pytest.raises(ValueError, match="v contains NaN or inf"):
        cache.append(good, good.clone().fill_(float("inf")))
    assert cache.length == 0  # a refused entry is not stored

    model = decoder(3)
    caches = model.new_caches(1, capacity=8)
    tokens = torch.randn(1, 8, 16, generator=gen)
    model(tokens[:, :4], caches=caches)
    checked = []
    original = check_finite_in_ops.__globals__["value_checks_enabled"]

    def spy(x: torch.Tensor) -> bool:
        enabled = original(x)
        checked.append((tuple(x.shape), enabled))
        return enabled

    monkeypatch.setitem(check_finite_in_ops.__globals__, "value_checks_enabled", spy)
    model(tokens[:, 4:5], caches=caches)
    whole_cache = [enabled for shape, enabled in checked if shape == (1, 2, 5, 8)]
    new_entry = [enabled for shape, enabled in checked if shape == (1, 2, 1, 8)]
    assert whole_cache and not any(whole_cache)  # the 5 cached keys/values are not re-read
    assert new_entry and all(new_entry)  # the new token's q, k, v are
