"""``torch.nn`` twins (with copied weights) and head split/merge helpers the modules are checked against."""

from __future__ import annotations

import torch
from torch import nn

from core.nn import MultiHeadAttention


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
