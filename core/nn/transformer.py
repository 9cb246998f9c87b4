"""Transformer encoder and decoder layers and stacks (Vaswani et al. 2017, §3.1), post- or pre-norm.

Post-norm (the paper): ``x = LayerNorm(x + Dropout(sublayer(x)))``. Pre-norm (Xiong et al. 2020):
``x = x + Dropout(sublayer(LayerNorm(x)))``, with one more LayerNorm after the last layer of a stack.
Relative positions (``max_relative_position``) are Music Transformer attention in every self-attention.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from core.nn.attention import MultiHeadAttention
from core.nn.cache import KVCache
from core.nn.dropout import Dropout

Activation = Literal["relu", "gelu"]
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": F.relu, "gelu": F.gelu}


class FeedForward(nn.Module):
    """Position-wise feed-forward network (§3.3): ``linear2(Dropout(act(linear1(x))))``.

    ``[..., d_model]`` → ``[..., d_model]`` through a hidden width ``d_ff``.
    """

    def __init__(
        self, d_model: int, d_ff: int, dropout: float = 0.1, activation: Activation = "relu"
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = Dropout(dropout)
        self.activation = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class Residual(nn.Module):
    """Residual connection around a sublayer with its LayerNorm and dropout (§5.4), pre- or post-norm."""

    def __init__(self, d_model: int, dropout: float, norm_first: bool, eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model, eps=eps)
        self.dropout = Dropout(dropout)
        self.norm_first = norm_first

    def forward(
        self, x: torch.Tensor, sublayer: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        if self.norm_first:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


class TransformerEncoderLayer(nn.Module):
    """Self-attention + FFN, each wrapped in a :class:`Residual`.

    Args:
        d_model: model width (512 in the paper); n_heads: heads (8).
        d_ff: FFN hidden width; defaults to ``4 * d_model`` (2048 for 512 in the paper).
        dropout: P_drop on every residual branch, inside the FFN and on the attention output (0.1).
        activation: ``"relu"`` (the paper) or ``"gelu"``.
        norm_first: pre-norm instead of the paper's post-norm.
        max_relative_position: K for bidirectional relative attention (Music Transformer); None:
            plain attention (add absolute positions to the input yourself).
        layer_norm_eps: LayerNorm epsilon.
        backend: passed to the attention ops.

    Input ``[B, L, d_model]`` (or packed ``[T, d_model]`` with ``cu_seqlens``); output the same shape.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int | None = None,
        dropout: float = 0.1,
        activation: Activation = "relu",
        norm_first: bool = False,
        max_relative_position: int | None = None,
        layer_norm_eps: float = 1e-5,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        self.d_model, self.norm_first, self.layer_norm_eps = d_model, norm_first, layer_norm_eps
        self.self_attn = MultiHeadAttention(
            d_model,
            n_heads,
            dropout=dropout,
            max_relative_position=max_relative_position,
            relative="bidirectional",
            backend=backend,
        )
        self.ffn = FeedForward(d_model, d_ff or 4 * d_model, dropout, activation)
        self.attn_residual = Residual(d_model, dropout, norm_first, layer_norm_eps)
        self.ffn_residual = Residual(d_model, dropout, norm_first, layer_norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        attn_bias: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x [B, L, d_model]`` with ``mask``/``attn_bias`` broadcastable to ``[B, H, L, L]``
        (True = may attend), or packed ``x [T, d_model]`` with int32 ``cu_seqlens [N+1]``."""

        def attend(h: torch.Tensor) -> torch.Tensor:
            return self.self_attn(h, mask=mask, attn_bias=attn_bias, cu_seqlens=cu_seqlens)

        return self.ffn_residual(self.attn_residual(x, attend), self.ffn)


class TransformerDecoderLayer(nn.Module):
    """Causal self-attention + cross-attention to the encoder's memory + FFN, each in a :class:`Residual`.

    Arguments as :class:`TransformerEncoderLayer`, plus:
        memory_dim: width of the memory; defaults to d_model.
        cross_attention: False drops the cross-attention block — a decoder-only layer (GPT, the
            Music Transformer).
        max_relative_position: K for *causal* relative self-attention (distances −K…0).
        share_relative_across_heads: one relative table for every head.

    Input ``[B, L, d_model]``, memory ``[B, S, memory_dim]``; output ``[B, L, d_model]``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int | None = None,
        dropout: float = 0.1,
        activation: Activation = "relu",
        norm_first: bool = False,
        max_relative_position: int | None = None,
        layer_norm_eps: float = 1e-5,
        memory_dim: int | None = None,
        cross_attention: bool = True,
        share_relative_across_heads: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        self.d_model, self.norm_first, self.layer_norm_eps = d_model, norm_first, layer_norm_eps
        self.self_attn = MultiHeadAttention(
            d_model,
            n_heads,
            dropout=dropout,
            max_relative_position=max_relative_position,
            relative="causal",
            share_relative_across_heads=share_relative_across_heads,
            backend=backend,
        )
        self.attn_residual = Residual(d_model, dropout, norm_first, layer_norm_eps)
        self.cross_attn: MultiHeadAttention | None = None
        self.cross_residual: Residual | None = None
        if cross_attention:
            self.cross_attn = MultiHeadAttention(
                d_model, n_heads, dropout=dropout, kv_dim=memory_dim, backend=backend
            )
            self.cross_residual = Residual(d_model, dropout, norm_first, layer_norm_eps)
        self.ffn = FeedForward(d_model, d_ff or 4 * d_model, dropout, activation)
        self.ffn_residual = Residual(d_model, dropout, norm_first, layer_norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Decode ``x [B, L, d_model]`` against ``memory [B, S, memory_dim]``.

        ``mask`` (broadcastable to ``[B, H, L, L]``) is combined with the causal mask, e.g. target
        key padding; ``memory_mask`` (broadcastable to ``[B, H, L, S]``) hides memory tokens. True =
        may attend. With ``cache``, x holds the next tokens after the cached ones (incremental
        decoding; ``mask`` then broadcasts to ``[B, H, L, cached + L]``), and the memory's keys and
        values are projected at the first step and reused: pass the same memory at every step.
        """
        if (memory is None) != (self.cross_attn is None):
            raise ValueError(
                "memory is required with cross_attention=True and refused without it; got "
                f"memory={'None' if memory is None else tuple(memory.shape)}, "
                f"cross_attention={self.cross_attn is not None}"
            )
        x = self.attn_residual(x, lambda h: self.self_attn(h, mask=mask, causal=True, cache=cache))
        if self.cross_attn is not None:
            x = self.cross_residual(
                x, lambda h: self.cross_attn(h, memory, mask=memory_mask, cache=cache)
            )
        return self.ffn_residual(x, self.ffn)


LayerT = TypeVar("LayerT", bound=nn.Module)


class LayerStack(nn.Module, Generic[LayerT]):
    """``num_layers`` layers built by ``layer_factory`` (fresh weights each), then a final LayerNorm.

    ``final_norm=None`` adds the final LayerNorm exactly when the layers are pre-norm (their outputs are
    otherwise un-normalised residual sums). Build the factory with ``functools.partial``, e.g.
    ``partial(TransformerEncoderLayer, d_model=256, n_heads=8, norm_first=True)``.
    """

    def __init__(
        self,
        layer_factory: Callable[[], LayerT],
        num_layers: int,
        final_norm: bool | None = None,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be ≥ 1, got {num_layers}")
        self.layers = nn.ModuleList(layer_factory() for _ in range(num_layers))
        first = self.layers[0]
        if final_norm is None:
            final_norm = bool(first.norm_first)
        self.norm: nn.Module = (
            nn.LayerNorm(first.d_model, eps=first.layer_norm_eps) if final_norm else nn.Identity()
        )

    def run(self, x: torch.Tensor, *args: torch.Tensor | None, **kwargs: object) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, *args, **kwargs)
        return self.norm(x)


class TransformerEncoder(LayerStack[TransformerEncoderLayer]):
    """A stack of :class:`TransformerEncoderLayer` s: ``[B, L, d_model]`` (or packed ``[T, d_model]``)
    → the same shape."""

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        attn_bias: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.run(x, mask=mask, attn_bias=attn_bias, cu_seqlens=cu_seqlens)


class TransformerDecoder(LayerStack[TransformerDecoderLayer]):
    """A stack of :class:`TransformerDecoderLayer` s: ``[B, L, d_model]`` + memory
    ``[B, S, memory_dim]`` → ``[B, L, d_model]``."""

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        caches: list[KVCache] | None = None,
    ) -> torch.Tensor:
        """``caches``: one per layer (:meth:`new_caches`) for incremental decoding."""
        if caches is None:
            return self.run(x, memory, mask=mask, memory_mask=memory_mask)
        if len(caches) != len(self.layers):
            raise ValueError(f"need one cache per layer ({len(self.layers)}), got {len(caches)}")
        for layer, cache in zip(self.layers, caches, strict=True):
            x = layer(x, memory, mask=mask, memory_mask=memory_mask, cache=cache)
        return self.norm(x)

    def new_caches(
        self,
        batch: int,
        capacity: int,
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> list[KVCache]:
        """Empty key/value caches, one per layer, for ``capacity`` positions of ``batch`` sequences."""
        attn = self.layers[0].self_attn
        return [
            KVCache(batch, attn.n_heads, capacity, attn.d_head, device, dtype) for _ in self.layers
        ]
