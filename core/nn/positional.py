"""Absolute positional encodings added to token embeddings: sinusoidal (Vaswani et al. 2017, §3.5) and
learned (Gehring et al. 2017; BERT). Relative positions live in :class:`core.nn.MultiHeadAttention`.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class AdditivePositionalEncoding(nn.Module):
    """``x + P[offset : offset + L]`` for ``x [B, L, d_model]`` or ``[L, d_model]``.

    ``offset`` is the position of x's first token, for incremental decoding (one new token at a time).
    Subclasses provide the table rows through :meth:`rows`.
    """

    def __init__(self, d_model: int, max_len: int) -> None:
        super().__init__()
        if d_model < 1 or max_len < 1:
            raise ValueError(f"d_model and max_len must be ≥ 1, got {d_model} and {max_len}")
        self.d_model, self.max_len = d_model, max_len

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Positions ``start … stop − 1`` of the table: ``[stop − start, d_model]``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        if x.dim() not in (2, 3) or x.shape[-1] != self.d_model:
            raise ValueError(
                f"x must be [B, L, d_model] or [L, d_model] with d_model={self.d_model}, "
                f"got shape {tuple(x.shape)}"
            )
        length = x.shape[-2]
        if offset < 0 or offset + length > self.max_len:
            raise ValueError(
                f"positions {offset}…{offset + length - 1} (offset={offset}, L={length}) exceed "
                f"max_len={self.max_len}; build the encoding with a larger max_len"
            )
        return x + self.rows(offset, offset + length).to(x.dtype)


class SinusoidalPositionalEncoding(AdditivePositionalEncoding):
    """Fixed encoding ``P[pos, 2i] = sin(pos / 10000^(2i/d))``, ``P[pos, 2i+1] = cos(pos / 10000^(2i/d))``.

    The table ``[max_len, d_model]`` is a non-persistent buffer (rebuilt, not checkpointed); odd
    ``d_model`` is allowed (the last channel is a sine).
    """

    def __init__(self, d_model: int, max_len: int = 5000) -> None:
        super().__init__(d_model, max_len)
        position = torch.arange(max_len, dtype=torch.float64)[:, None]
        inv_freq = torch.exp(
            torch.arange(0, d_model, 2, dtype=torch.float64) * -math.log(1e4) / d_model
        )
        angles = position * inv_freq  # [max_len, ceil(d/2)]
        table = torch.empty(max_len, d_model, dtype=torch.float64)
        table[:, 0::2] = angles.sin()
        table[:, 1::2] = angles[:, : d_model // 2].cos()
        self.register_buffer("table", table.float(), persistent=False)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        return self.table[start:stop]


class LearnedPositionalEncoding(AdditivePositionalEncoding):
    """A learned vector per absolute position, ``weight [max_len, d_model]``, initialised N(0, 0.02²)
    as in BERT/GPT-2."""

    def __init__(self, d_model: int, max_len: int = 512) -> None:
        super().__init__(d_model, max_len)
        self.weight = nn.Parameter(torch.randn(max_len, d_model) * 0.02)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        return self.weight[start:stop]
