"""MQSA: multi-query self-attention for sequential recommendation (Zhu et al., WSDM 2024), with
SASRec (Kang & McAuley 2018) as its one-branch special case.

Both follow SASRec's block (§3.2 of SASRec; the official MQSA-TED code): item embeddings scaled by
√d plus learned positions, causal self-attention whose *query* is layer-normalised while keys and
values read the block input as it is, a residual on the normalised query, LayerNorm, a position-wise
FFN with a residual, and a final LayerNorm. Padding (item 0, left of the sequence) is masked as a
key, and its outputs are zeroed.

MQSA (§3.1–3.2 of the paper) runs two such stacks with their own weights over the same embeddings:
the *short-query* branch (the query at t is item t, L = 1, exactly SASRec) and the *long-query*
branch (the query at t is the mean of the last L items, L = 3), and mixes them as
``α·short + (1−α)·long``. Scores are dot products with the shared item embeddings, so mixing the two
branches' representations mixes their logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.nn import Dropout, FeedForward, MultiHeadAttention, key_padding_to_attention_mask

LAYER_NORM_EPS = 1e-8  # SASRec's
EMBEDDING_STD = 0.01  # the official code's N(0, 0.01²) for item and position embeddings


@dataclass(frozen=True)
class RecsysConfig:
    """Hyper-parameters of :class:`MQSA` (official MQSA-TED defaults: d 64, 1 block, 1 head,
    dropout 0.5, L = 3, α = 0.5; the maximum length, 50, comes with the data).

    ``long_query: null`` drops the long-query branch: SASRec.
    """

    d_model: int = 64
    num_blocks: int = 1
    n_heads: int = 1
    dropout: float = 0.5
    long_query: int | None = 3
    alpha: float = 0.5


def last_items_mean(x: torch.Tensor, valid: torch.Tensor, length: int) -> torch.Tensor:
    """The L-query (§3.1): at each position the mean of the last ``length`` real inputs.

    ``x [B, T, d]`` (zero at padding), ``valid [B, T]`` → ``[B, T, d]``; a position averages itself
    and the ``length − 1`` before it, counting only real items (zero at padding).
    """
    if length == 1:
        return x

    def window_sum(t: torch.Tensor) -> torch.Tensor:  # [B, C, T]: sum over the last `length`
        return F.avg_pool1d(F.pad(t, (length - 1, 0)), length, stride=1) * length

    sums = window_sum(x.transpose(1, 2)).transpose(1, 2)
    counts = window_sum(valid[:, None].to(x.dtype))[:, 0]
    return sums / counts.clamp(min=1.0)[..., None]


class QueryBlock(nn.Module):
    """One SASRec block whose query at position t is ``LayerNorm(last_items_mean(x, L))``.

    ``x [B, T, d]``, ``valid [B, T]``, ``mask`` ``[B, 1, 1, T]`` (real keys) → ``[B, T, d]``.
    """

    def __init__(self, config: RecsysConfig, query_length: int) -> None:
        super().__init__()
        d = config.d_model
        self.query_length = query_length
        self.query_norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.attention = MultiHeadAttention(d, config.n_heads, dropout=config.dropout)
        self.ffn_norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.ffn = FeedForward(d, d, config.dropout)  # SASRec's FFN is d → d → d
        self.dropout = Dropout(config.dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        query = self.query_norm(last_items_mean(x, valid, self.query_length))
        h = self.ffn_norm(query + self.attention(query, x, mask=mask, causal=True))
        return (h + self.dropout(self.ffn(h))) * valid[..., None]


class QueryBranch(nn.Module):
    """A stack of :class:`QueryBlock` with one query length, then the final LayerNorm."""

    def __init__(self, config: RecsysConfig, query_length: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            QueryBlock(config, query_length) for _ in range(config.num_blocks)
        )
        self.norm = nn.LayerNorm(config.d_model, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        mask = key_padding_to_attention_mask(valid)
        for block in self.blocks:
            x = block(x, valid, mask)
        return self.norm(x)


class MQSA(nn.Module):
    """Short- and long-query branches over shared item embeddings (SASRec when ``long_query`` is None).

    Item ids run ``1..num_items``; 0 is padding (a zero, untrained embedding row). ``max_len``: the
    longest input window (one learned position per slot).
    """

    def __init__(self, config: RecsysConfig, num_items: int, max_len: int = 50) -> None:
        super().__init__()
        if config.long_query is not None and config.long_query < 2:
            raise ValueError(
                f"long_query must be ≥ 2 (or null for SASRec), got {config.long_query}"
            )
        if not 0.0 <= config.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {config.alpha}")
        self.config, self.num_items, self.max_len = config, num_items, max_len
        d = config.d_model
        self.item_embedding = nn.Embedding(num_items + 1, d, padding_idx=0)
        self.position_embedding = nn.Parameter(torch.randn(max_len, d) * EMBEDDING_STD)
        nn.init.normal_(self.item_embedding.weight[1:], std=EMBEDDING_STD)
        self.dropout = Dropout(config.dropout)
        self.short = QueryBranch(config, 1)
        self.long = None if config.long_query is None else QueryBranch(config, config.long_query)

    @property
    def items(self) -> torch.Tensor:
        """The embeddings of the real items ``[num_items, d]`` (row ``i − 1`` is item i)."""
        return self.item_embedding.weight[1:]

    def embed(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``items [B, T]`` (left-padded, T ≤ max_len) → inputs ``[B, T, d]`` and ``valid [B, T]``.

        Positions are the slots of the padded window, so the latest item always has the last one.
        """
        length = items.shape[1]
        if length > self.max_len:
            raise ValueError(f"sequence of {length} items is longer than max_len={self.max_len}")
        valid = items > 0
        x = self.item_embedding(items) * self.config.d_model**0.5
        x = x + self.position_embedding[self.max_len - length :]
        return self.dropout(x) * valid[..., None], valid

    def branches(self, items: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each branch's representation ``[B, T, d]`` by name (``short``, and ``long`` for MQSA)."""
        x, valid = self.embed(items)
        out = {"short": self.short(x, valid)}
        if self.long is not None:
            out["long"] = self.long(x, valid)
        return out

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """``items [B, T]`` → ``[B, T, d]``: ``α·short + (1−α)·long``; its dot product with an item's
        embedding is the score of that item coming next."""
        out = self.branches(items)
        if "long" not in out:
            return out["short"]
        alpha = self.config.alpha
        return alpha * out["short"] + (1.0 - alpha) * out["long"]

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden [..., d]`` → scores of every item ``[..., num_items + 1]`` (column 0: padding)."""
        return hidden @ self.item_embedding.weight.T
