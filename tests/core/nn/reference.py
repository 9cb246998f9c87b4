"""``torch.nn`` twins (with copied weights) and head plumbing that the modules are checked against."""

from __future__ import annotations

import torch
from torch import nn

from core.nn import MultiHeadAttention
from core.ops import causal_mask, naive


def copy_attention(dst: nn.MultiheadAttention, src: MultiHeadAttention) -> None:
    """Load ``src``'s projections into a ``torch.nn.MultiheadAttention`` of the same shape."""
    with torch.no_grad():
        weights = (src.q_proj.weight, src.k_proj.weight, src.v_proj.weight)
        if dst._qkv_same_embed_dim:
            dst.in_proj_weight.copy_(torch.cat(weights))
        else:
            for name, w in zip(("q", "k", "v"), weights, strict=True):
                getattr(dst, f"{name}_proj_weight").copy_(w)
        dst.in_proj_bias.copy_(torch.cat([src.q_proj.bias, src.k_proj.bias, src.v_proj.bias]))
        dst.out_proj.load_state_dict(src.out_proj.state_dict())


def torch_attention_twin(src: MultiHeadAttention) -> nn.MultiheadAttention:
    twin = nn.MultiheadAttention(
        src.d_model, src.n_heads, batch_first=True, kdim=src.kv_dim, vdim=src.kv_dim
    ).double()
    copy_attention(twin, src)
    return twin


def split_heads(mha: MultiHeadAttention, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """q, k, v ``[B, H, L, d_head]`` of self-attention over ``x [B, L, d_model]``."""
    return tuple(
        proj(x).unflatten(-1, (mha.n_heads, mha.d_head)).transpose(1, 2)
        for proj in (mha.q_proj, mha.k_proj, mha.v_proj)
    )


def merge_heads(mha: MultiHeadAttention, out: torch.Tensor) -> torch.Tensor:
    """Heads ``[B, H, L, d_head]`` → concat → ``out_proj`` → ``[B, L, d_model]``."""
    return mha.out_proj(out.transpose(1, 2).flatten(-2))


# The formulas live in core.ops.naive; these adapters keep the call style of test_attention.py.


def softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    allowed: torch.Tensor | None = None,
    logits_extra: torch.Tensor | None = None,
) -> torch.Tensor:
    """``softmax((q kᵀ + logits_extra) / sqrt(D)) v``: :func:`core.ops.naive.softmax_attention` with
    the extra logits added before the scaling, as a relative term enters attention."""
    scale = q.shape[-1] ** -0.5
    bias = None if logits_extra is None else logits_extra * scale
    return naive.softmax_attention(q, k, v, allowed, bias=bias, scale=scale)


def shaw_relative_logits(
    q: torch.Tensor, rel_emb: torch.Tensor, causal_table: bool
) -> torch.Tensor:
    """Shaw et al.'s explicit relative logits, :func:`core.ops.naive.shaw_relative_logits`."""
    return naive.shaw_relative_logits(q, rel_emb, causal=causal_table)


def lower_triangle(length: int) -> torch.Tensor:
    return causal_mask(length, length)
