"""Dense scaled dot-product attention (Vaswani et al. 2017) with boolean mask, additive bias, causal."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from core.ops._checks import (
    check_attention_inputs,
    check_floating,
    check_mask,
    check_same,
    value_checks_enabled,
)
from core.ops.backend import dispatch


def causal_mask(len_q: int, len_k: int, device: torch.device | None = None) -> Tensor:
    """Boolean ``[Lq, Lk]`` mask, True where key j may be seen by query i: ``j <= i + Lk - Lq``.

    Bottom-right aligned (as FlashAttention ≥ 2.1), so the last query sees every key; for Lq == Lk it is
    the usual lower triangle.
    """
    rows = torch.arange(len_q, device=device)[:, None]
    cols = torch.arange(len_k, device=device)[None, :]
    return cols <= rows + (len_k - len_q)


def merge_mask_and_bias(
    mask: Tensor | None,
    bias: Tensor | None,
    causal: bool,
    len_q: int,
    len_k: int,
    device: torch.device,
) -> Tensor | None:
    """One ``attn_mask`` for SDPA: boolean if there is no bias, else the bias with ``-inf`` where masked."""
    if causal:
        tri = causal_mask(len_q, len_k, device)
        mask = tri if mask is None else mask & tri
    if bias is None:
        return mask
    if mask is None:
        return bias
    return bias.masked_fill(~mask, float("-inf"))


def attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    bias: Tensor | None,
    causal: bool,
    scale: float,
) -> Tensor:
    """PyTorch path: SDPA (fused on the CPU too); its safe softmax gives zeros for fully masked rows."""
    attn_mask = merge_mask_and_bias(mask, bias, causal, q.shape[-2], k.shape[-2], q.device)
    if attn_mask is not None and attn_mask.dtype != torch.bool:
        attn_mask = attn_mask.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)


def validate_dense(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, bias: Tensor | None
) -> None:
    """Checks shared by the dense ops: ``q [B, H, Lq, D]``, ``k [B, H, Lk, D]``, ``v [B, H, Lk, Dv]``."""
    check_attention_inputs(q, k, v, "[B, H, L, D]", length_dim=2)
    check_same("batch sizes", q=q.shape[0], k=k.shape[0], v=v.shape[0])
    target = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    if mask is not None:
        check_mask("mask", mask, target)
    if bias is not None:
        check_floating("bias", bias)
        if bias.dim() > 4 or torch.broadcast_shapes(bias.shape, target) != target:
            raise ValueError(f"bias of shape {tuple(bias.shape)} does not broadcast to {target}")
        if value_checks_enabled(bias) and torch.isnan(bias).any():
            raise ValueError("bias contains NaN; use mask (or -inf) to hide keys")


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    bias: Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    backend: str | None = None,
) -> Tensor:
    """Softmax attention ``softmax(q kᵀ · scale + bias) v`` — "Attention Is All You Need", §3.2.1.

    Args:
        q: ``[B, H, Lq, D]``; k: ``[B, H, Lk, D]``; v: ``[B, H, Lk, Dv]`` — same float dtype.
        mask: boolean, broadcastable to ``[B, H, Lq, Lk]``; True = may attend.
        bias: additive float logits bias broadcastable to ``[B, H, Lq, Lk]`` (added after scaling).
        causal: hide keys j > i + Lk − Lq (bottom-right aligned).
        scale: defaults to ``1/sqrt(D)``.
        backend: ``"auto" | "reference" | "triton"`` (see :mod:`core.ops.backend`; on CUDA, ``"auto"``
            runs PyTorch's SDPA unless there is a bias).

    Returns ``[B, H, Lq, Dv]``; a query row that may see no key returns zeros.
    """
    validate_dense(q, k, v, mask, bias)
    scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    return dispatch(
        "attention", backend, q=q, k=k, v=v, mask=mask, bias=bias, causal=causal, scale=scale
    )
