"""Multi-head attention (Vaswani et al. 2017, §3.2.2) on the core ops, with optional relative positions
(Music Transformer, Huang et al. 2018) and packed variable-length input (``cu_seqlens``).

Masks are boolean, True = may attend. ``torch.nn.MultiheadAttention`` uses the opposite sense for
``attn_mask`` and ``key_padding_mask``; convert with ``~`` (see :func:`key_padding_to_attention_mask`).
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch
from torch import nn

from core.nn.cache import KVCache
from core.nn.dropout import Dropout
from core.ops import attention, causal_mask, relative_attention, varlen_attention
from core.ops._checks import check_finite, check_mask, checked_already
from core.ops.relative_attention import relative_logits_last

RelativeKind = Literal["bidirectional", "causal"]


class AttentionRecorder(Protocol):
    """What the attention modules hand an active recorder (``core.inspect``) instead of calling the op.

    Each method takes the calling module and the op's inputs and returns the op's output, computed
    through a reference path that materialises the attention weights so they can be recorded.
    """

    def attention(
        self,
        module: nn.Module,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        mask: torch.Tensor | None,
        bias: torch.Tensor | None,
        causal: bool,
        self_attention: bool,
    ) -> torch.Tensor: ...

    def relative_attention(
        self,
        module: nn.Module,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        rel_emb: torch.Tensor,
        *,
        causal: bool,
        mask: torch.Tensor | None,
    ) -> torch.Tensor: ...

    def varlen_attention(
        self,
        module: nn.Module,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        cu_seqlens: torch.Tensor,
        *,
        cu_seqlens_k: torch.Tensor | None,
        causal: bool,
        self_attention: bool,
    ) -> torch.Tensor: ...

    def pointer_attention(
        self,
        module: nn.Module,
        query: torch.Tensor,
        keys: torch.Tensor,
        v: torch.Tensor,
        *,
        mask: torch.Tensor | None,
    ) -> torch.Tensor: ...

    def attention_pool(
        self,
        module: nn.Module,
        scores: torch.Tensor,
        values: torch.Tensor,
        cu_seqlens: torch.Tensor,
        *,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class RecorderSlot:
    """The active :class:`AttentionRecorder`, or None (the default): nothing is recorded.

    ``core.inspect`` fills it while recording; :class:`MultiHeadAttention`, ``PointerAttention`` and
    ``AttentionPool`` read it once per forward, so inspection costs one attribute lookup when inactive.
    """

    def __init__(self) -> None:
        self.active: AttentionRecorder | None = None


RECORDER = RecorderSlot()


def key_padding_to_attention_mask(valid: torch.Tensor) -> torch.Tensor:
    """Key-padding mask ``[B, S]`` (True = real token) → attention mask ``[B, 1, 1, S]``.

    The result broadcasts against ``[B, H, L, S]``; combine it with other masks by ``&``. From
    ``nn.MultiheadAttention``'s ``key_padding_mask`` (True = ignore) pass ``~key_padding_mask``.
    """
    if valid.dtype != torch.bool or valid.dim() != 2:
        raise ValueError(
            f"key-padding mask must be boolean [B, S] (True = real token), "
            f"got {valid.dtype} of shape {tuple(valid.shape)}"
        )
    return valid[:, None, None, :]


def check_features(name: str, x: torch.Tensor, rank: int, layout: str, features: int) -> None:
    """Raise unless ``x`` has ``rank`` dims (``layout``) and ``features`` channels in the last one."""
    if x.dim() != rank or x.shape[-1] != features:
        raise ValueError(
            f"{name} must be {layout} with {features} features, got shape {tuple(x.shape)}"
        )


class MultiHeadAttention(nn.Module):
    """Multi-head attention: ``out_proj(concat_h attention(x W_q^h, c W_k^h, c W_v^h))``.

    Args:
        d_model: width of the queries' input x (and of the output).
        n_heads: number of heads H.
        d_head: width of one head; defaults to ``d_model // n_heads``.
        dropout: dropout on the concatenated head outputs, before ``out_proj``. The ops have no
            attention-weight dropout; this is the same regulariser one step later.
        bias: biases in the four projections.
        kv_dim: width of the keys'/values' input (the cross-attention context); defaults to d_model.
        max_relative_position: K ≥ 0; when set, the module owns learned relative embeddings ``rel_emb``
            ``[H, R, d_head]`` (Shaw et al. 2018, computed the Music Transformer way, §3.4) and distances
            beyond ±K share the edge row. Needs self-attention on dense input.
        relative: which distances ``rel_emb`` covers, fixed at construction: ``"bidirectional"``
            (−K…K, R = 2K+1; encoders) or ``"causal"`` (−K…0, R = K+1; decoders — this makes every
            forward causal, since the table has no rows for future keys).
        share_relative_across_heads: one table ``[1, R, d_head]`` for every head (the Music
            Transformer's option) instead of one per head.
        backend: ``"auto" | "reference" | "triton"`` passed to the ops (None: ``MANYHEADS_BACKEND``).

    Dense input: ``x [B, L, d_model]``, ``context [B, S, kv_dim]`` → ``[B, L, d_model]``.
    Packed input: ``x [T, d_model]`` + ``cu_seqlens`` → ``[T, d_model]``; tokens attend within their
    own segment (``core.ops.varlen_attention``).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_head: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        kv_dim: int | None = None,
        max_relative_position: int | None = None,
        relative: RelativeKind = "bidirectional",
        share_relative_across_heads: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        if d_head is None:
            if d_model % n_heads:
                raise ValueError(
                    f"d_model={d_model} is not divisible by n_heads={n_heads}; pass d_head"
                )
            d_head = d_model // n_heads
        if relative not in ("bidirectional", "causal"):
            raise ValueError(f"relative must be 'bidirectional' or 'causal', got {relative!r}")
        if max_relative_position is not None and max_relative_position < 0:
            raise ValueError(f"max_relative_position must be ≥ 0, got {max_relative_position}")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_head
        self.kv_dim = kv_dim if kv_dim is not None else d_model
        self.max_relative_position = max_relative_position
        self.relative = relative
        self.backend = backend
        inner = n_heads * d_head
        self.q_proj = nn.Linear(d_model, inner, bias=bias)
        self.k_proj = nn.Linear(self.kv_dim, inner, bias=bias)
        self.v_proj = nn.Linear(self.kv_dim, inner, bias=bias)
        self.out_proj = nn.Linear(inner, d_model, bias=bias)
        self.dropout = Dropout(dropout)
        self.rel_emb: nn.Parameter | None = None
        if max_relative_position is not None:
            rows = (
                max_relative_position + 1 if relative == "causal" else 2 * max_relative_position + 1
            )
            # N(0, d_head^-1/2), the Music Transformer's (tensor2tensor) initialiser.
            tables = 1 if share_relative_across_heads else n_heads
            self.rel_emb = nn.Parameter(torch.randn(tables, rows, d_head) * d_head**-0.5)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        attn_bias: torch.Tensor | None = None,
        causal: bool = False,
        cu_seqlens: torch.Tensor | None = None,
        context_cu_seqlens: torch.Tensor | None = None,
        cache: KVCache | None = None,
        value: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from ``x`` to ``context`` (self-attention when None).

        Args:
            x: ``[B, L, d_model]``, or packed ``[T, d_model]`` with ``cu_seqlens``.
            context: ``[B, S, kv_dim]``, or packed ``[Tk, kv_dim]`` (segments paired with x's by
                ``context_cu_seqlens``, default ``cu_seqlens``).
            mask: dense only; boolean, broadcastable to ``[B, H, L, S]``, True = may attend.
            attn_bias: dense only; float logits bias broadcastable to ``[B, H, L, S]``.
            causal: query i sees keys j ≤ i (bottom-right aligned when L ≠ S).
            cu_seqlens: int32 ``[N+1]`` segment offsets of packed x.
            context_cu_seqlens: int32 ``[N+1]`` segment offsets of packed context.
            cache: incremental decoding (dense). Self-attention: x holds the next l tokens, at
                positions ``cache.length …``; their keys and values are appended to the cache and
                they attend every cached position and each other causally. Cross-attention (with
                ``context``): the context's keys and values are projected at the first step, kept
                in ``cache.context`` and reused, so pass the same context at every step.
            value: the values' input when it differs from the keys' (same shape as the keys'
                input): DSVT and DETR add positions to queries and keys but not to values.
                Dense and packed input only.

        Returns ``[B, L, d_model]`` (dense) or ``[T, d_model]`` (packed).
        """
        if cu_seqlens is not None:
            return self._forward_packed(
                x, context, value, cu_seqlens, context_cu_seqlens, mask, attn_bias, causal
            )
        if context_cu_seqlens is not None:
            raise ValueError("context_cu_seqlens needs cu_seqlens (packed input)")
        if cache is not None:
            if value is not None:
                raise ValueError("value is for dense and packed input, not cached decoding")
            return self._forward_cached(x, context, cache, mask, attn_bias)
        return self._forward_dense(x, context, value, mask, attn_bias, causal)

    def _project(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None,
        packed: bool,
        value: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v split into heads: ``[..., L, H, d_head]``."""
        if packed:
            rank, x_layout, c_layout = 2, "[T, d_model]", "[Tk, kv_dim]"
        else:
            rank, x_layout, c_layout = 3, "[B, L, d_model]", "[B, S, kv_dim]"
        check_features("x", x, rank, x_layout, self.d_model)
        if context is not None:
            check_features("context", context, rank, c_layout, self.kv_dim)
        elif self.kv_dim != self.d_model:
            raise ValueError(
                f"kv_dim={self.kv_dim} differs from d_model={self.d_model}: pass context"
            )
        source = x if context is None else context
        if value is not None and value.shape != source.shape:
            raise ValueError(
                f"value has shape {tuple(value.shape)}; expected the keys' input shape "
                f"{tuple(source.shape)}"
            )
        heads = (self.n_heads, self.d_head)
        return (
            self.q_proj(x).unflatten(-1, heads),
            self.k_proj(source).unflatten(-1, heads),
            self.v_proj(source if value is None else value).unflatten(-1, heads),
        )

    def _merge(self, out: torch.Tensor) -> torch.Tensor:
        """``[..., H, d_head]`` → concat heads → dropout → ``out_proj`` → ``[..., d_model]``."""
        return self.out_proj(self.dropout(out.flatten(-2)))

    def _forward_dense(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None,
        value: torch.Tensor | None,
        mask: torch.Tensor | None,
        attn_bias: torch.Tensor | None,
        causal: bool,
    ) -> torch.Tensor:
        q, k, v = (t.transpose(1, 2) for t in self._project(x, context, False, value))
        recorder = RECORDER.active
        if self.rel_emb is None and recorder is not None:
            out = recorder.attention(
                self,
                q,
                k,
                v,
                mask=mask,
                bias=attn_bias,
                causal=causal,
                self_attention=context is None,
            )
        elif self.rel_emb is None:
            out = attention(q, k, v, mask=mask, bias=attn_bias, causal=causal, backend=self.backend)
        else:
            if context is not None or attn_bias is not None:
                raise ValueError(
                    "relative positions (max_relative_position) need self-attention without "
                    "attn_bias; got " + ("context" if context is not None else "attn_bias")
                )
            out = self._relative(q, k, v, self.relative_table(), mask, causal)
        return self._merge(out.transpose(1, 2))

    def relative_table(self) -> torch.Tensor:
        """The relative embeddings of every head, ``[H, R, d_head]`` (a shared table expanded)."""
        assert self.rel_emb is not None
        return self.rel_emb.expand(self.n_heads, -1, -1)

    def _forward_cached(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None,
        cache: KVCache,
        mask: torch.Tensor | None,
        attn_bias: torch.Tensor | None,
    ) -> torch.Tensor:
        """One decoding step: queries at the last l positions against the whole cache, causally;
        or, with ``context``, against the cached projection of the context."""
        if context is not None:
            return self._forward_cached_context(x, context, cache, mask, attn_bias)
        q, k, v = (t.transpose(1, 2) for t in self._project(x, None, packed=False))
        k, v = cache.append(k, v)
        if self.rel_emb is not None:
            if attn_bias is not None:
                raise ValueError("relative positions (max_relative_position) refuse attn_bias")
            causal_table = self.relative == "causal"
            relative = relative_logits_last(q, self.relative_table(), cache.length, causal_table)
            attn_bias = relative * self.d_head**-0.5
        recorder = RECORDER.active
        if recorder is not None:
            out = recorder.attention(
                self, q, k, v, mask=mask, bias=attn_bias, causal=True, self_attention=True
            )
        else:
            # one new token is the last position: it sees every cached key, so no causal mask
            causal = q.shape[2] > 1
            with checked_already(k, v):  # by the cache, each entry once
                out = attention(
                    q, k, v, mask=mask, bias=attn_bias, causal=causal, backend=self.backend
                )
        return self._merge(out.transpose(1, 2))

    def _forward_cached_context(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        cache: KVCache,
        mask: torch.Tensor | None,
        attn_bias: torch.Tensor | None,
    ) -> torch.Tensor:
        """Cross-attention of one decoding step, the context's keys and values projected once."""
        check_features("x", x, 3, "[B, L, d_model]", self.d_model)
        if cache.context is None:
            check_features("context", context, 3, "[B, S, kv_dim]", self.kv_dim)
            heads = (self.n_heads, self.d_head)
            k = self.k_proj(context).unflatten(-1, heads).transpose(1, 2)
            v = self.v_proj(context).unflatten(-1, heads).transpose(1, 2)
            check_finite("context keys", k)  # once: later steps reuse them unchecked
            check_finite("context values", v)
            cache.context = (k, v)
        k, v = cache.context
        q = self.q_proj(x).unflatten(-1, (self.n_heads, self.d_head)).transpose(1, 2)
        recorder = RECORDER.active
        if recorder is not None:
            out = recorder.attention(
                self, q, k, v, mask=mask, bias=attn_bias, causal=False, self_attention=False
            )
        else:
            with checked_already(k, v):
                out = attention(q, k, v, mask=mask, bias=attn_bias, backend=self.backend)
        return self._merge(out.transpose(1, 2))

    def _relative(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        rel_emb: torch.Tensor,
        mask: torch.Tensor | None,
        causal: bool,
    ) -> torch.Tensor:
        """Music Transformer attention ``[B, H, L, d_head]``. A bidirectional table used causally
        keeps its causal-ness in the mask (the op's ``causal`` reads the table as −K…0)."""
        if self.relative == "bidirectional" and causal:
            length = q.shape[2]
            if mask is not None:
                check_mask("mask", mask, (q.shape[0], self.n_heads, length, length))
            tri = causal_mask(length, length, q.device)
            mask = tri if mask is None else mask & tri
        causal_table = self.relative == "causal"
        recorder = RECORDER.active
        if recorder is not None:
            return recorder.relative_attention(
                self, q, k, v, rel_emb, causal=causal_table, mask=mask
            )
        return relative_attention(
            q, k, v, rel_emb, causal=causal_table, mask=mask, backend=self.backend
        )

    def _forward_packed(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None,
        value: torch.Tensor | None,
        cu_seqlens: torch.Tensor,
        context_cu_seqlens: torch.Tensor | None,
        mask: torch.Tensor | None,
        attn_bias: torch.Tensor | None,
        causal: bool,
    ) -> torch.Tensor:
        if mask is not None or attn_bias is not None:
            raise ValueError(
                "mask and attn_bias are for dense input; with cu_seqlens a token attends "
                "exactly the tokens of its own segment"
            )
        if self.rel_emb is not None:
            raise ValueError(
                "relative positions (max_relative_position) need dense [B, L, d] input"
            )
        if context_cu_seqlens is not None and context is None:
            raise ValueError("context_cu_seqlens given without context")
        q, k, v = self._project(x, context, True, value)
        recorder = RECORDER.active
        if recorder is not None:
            out = recorder.varlen_attention(
                self,
                q,
                k,
                v,
                cu_seqlens,
                cu_seqlens_k=context_cu_seqlens,
                causal=causal,
                self_attention=context is None,
            )
        else:
            out = varlen_attention(
                q,
                k,
                v,
                cu_seqlens,
                cu_seqlens_k=context_cu_seqlens,
                causal=causal,
                backend=self.backend,
            )
        return self._merge(out)
