"""Positional encodings against the closed formula (Vaswani §3.5), offsets and length limits."""

from __future__ import annotations

import math

import pytest
import torch

from core.nn import LearnedPositionalEncoding, SinusoidalPositionalEncoding


@pytest.mark.parametrize("d_model", [8, 7])
def test_sinusoidal_matches_closed_formula(gen: torch.Generator, d_model: int) -> None:
    encoding = SinusoidalPositionalEncoding(d_model, max_len=50).double()
    x = torch.randn(2, 40, d_model, generator=gen, dtype=torch.float64)
    expected = torch.tensor(
        [
            [
                math.sin(pos / 10000 ** (c / d_model))
                if c % 2 == 0
                else math.cos(pos / 10000 ** ((c - 1) / d_model))
                for c in range(d_model)
            ]
            for pos in range(40)
        ],
        dtype=torch.float64,
    )
    # the table is stored in float32: compare at float32 rounding
    torch.testing.assert_close(encoding(x), x + expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEncoding])
def test_offset_continues_the_sequence(gen: torch.Generator, cls: type) -> None:
    encoding = cls(6, max_len=12)
    x = torch.randn(3, 10, 6, generator=gen)
    full = encoding(x)
    torch.testing.assert_close(encoding(x[:, 7:9], offset=7), full[:, 7:9])
    torch.testing.assert_close(encoding(x[1], offset=0), full[1])  # unbatched [L, d_model]


def test_learned_adds_its_rows_and_learns_only_the_used_ones(gen: torch.Generator) -> None:
    encoding = LearnedPositionalEncoding(5, max_len=9).double()
    x = torch.randn(2, 4, 5, generator=gen, dtype=torch.float64)
    out = encoding(x, offset=3)
    torch.testing.assert_close(out, x + encoding.weight[3:7])
    out.sum().backward()
    assert encoding.weight.grad is not None
    used = torch.zeros(9, dtype=torch.bool)
    used[3:7] = True
    assert (encoding.weight.grad[used] == 2).all() and (encoding.weight.grad[~used] == 0).all()


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEncoding])
def test_bad_input_raises_clear_errors(cls: type) -> None:
    encoding = cls(6, max_len=8)
    with pytest.raises(ValueError, match="exceed max_len=8"):
        encoding(torch.randn(1, 9, 6))
    with pytest.raises(ValueError, match="exceed max_len=8"):
        encoding(torch.randn(1, 3, 6), offset=6)
    with pytest.raises(ValueError, match="d_model=6"):
        encoding(torch.randn(1, 3, 5))
