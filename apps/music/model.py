"""The Music Transformer (Huang et al. 2019): a decoder-only Transformer whose self-attention adds a
learned embedding per relative distance (§3.4), computed with the skewing procedure so the relative
term costs O(L·D) memory, not Shaw et al.'s O(L²·D). With relative attention off it is the vanilla
Transformer baseline of the paper's tables (sinusoidal absolute positions)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from apps.music.tokens import PAD
from core.nn import Dropout, KVCache, SinusoidalPositionalEncoding, TransformerDecoder
from core.nn import TransformerDecoderLayer as DecoderLayer


@dataclass(frozen=True)
class MusicConfig:
    """Hyper-parameters of :class:`MusicTransformer`, defaulting to the paper's JSB setting (§4.1):
    5 layers, d_model 512, 8 heads, FFN 512, relative distances clipped at 256.

    ``max_relative_position: null`` turns relative attention off (the vanilla baseline, which then
    adds sinusoidal positions); ``absolute_positions`` adds them to the relative model too.
    ``share_relative_across_heads``: one relative table per layer instead of one per head.
    ``norm_first``: pre-norm blocks with a final LayerNorm (tensor2tensor's layout, which the
    paper's code used); False gives the post-norm of Vaswani et al.
    """

    num_layers: int = 5
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 512
    dropout: float = 0.1
    max_relative_position: int | None = 256
    share_relative_across_heads: bool = False
    absolute_positions: bool = False
    norm_first: bool = True

    @property
    def relative(self) -> bool:
        return self.max_relative_position is not None


class MusicTransformer(nn.Module):
    """Tokens ``[B, L]`` → next-token logits ``[B, L, V]``, causally.

    Args:
        config: the hyper-parameters.
        vocab_size: V, the representation's vocabulary (specials included).
        max_len: the longest sequence the absolute positions (when used) and a generation cover.
    """

    def __init__(self, config: MusicConfig, vocab_size: int, max_len: int) -> None:
        super().__init__()
        self.config, self.vocab_size, self.max_len = config, vocab_size, max_len
        d = config.d_model
        self.embedding = nn.Embedding(vocab_size, d, padding_idx=PAD)
        # N(0, 1/d), so the √d-scaled embeddings have unit scale beside the (sinusoidal) positions
        # and the layers' outputs, as in tensor2tensor; torch's N(0, 1) would make them 16× larger
        # at d = 256 and drown both.
        nn.init.normal_(self.embedding.weight, std=d**-0.5)
        with torch.no_grad():
            self.embedding.weight[PAD].zero_()
        self.positions = (
            SinusoidalPositionalEncoding(d, max_len)
            if config.absolute_positions or not config.relative
            else None
        )
        self.dropout = Dropout(config.dropout)
        layer = partial(
            DecoderLayer,
            d_model=d,
            n_heads=config.n_heads,
            d_ff=config.d_ff,
            dropout=config.dropout,
            norm_first=config.norm_first,
            max_relative_position=config.max_relative_position,
            cross_attention=False,
            share_relative_across_heads=config.share_relative_across_heads,
        )
        self.decoder = TransformerDecoder(layer, config.num_layers)
        self.head = nn.Linear(d, vocab_size)

    def forward(self, tokens: torch.Tensor, caches: list[KVCache] | None = None) -> torch.Tensor:
        """``tokens [B, L]`` → logits ``[B, L, V]``. With ``caches`` (:meth:`new_caches`) the
        tokens continue the cached ones (incremental decoding: each step costs O(L), not O(L²))."""
        offset = caches[0].length if caches else 0
        x = self.embedding(tokens) * math.sqrt(self.config.d_model)
        if self.positions is not None:
            x = self.positions(x, offset)
        return self.head(self.decoder(self.dropout(x), caches=caches))

    def new_caches(self, batch: int, capacity: int) -> list[KVCache]:
        """Empty key/value caches for generating ``capacity`` tokens of ``batch`` sequences."""
        weight = self.head.weight
        return self.decoder.new_caches(batch, capacity, weight.device, weight.dtype)
