"""Dense scaled dot-product attention (Vaswani et al. 2017) with boolean mask, additive bias, causal."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from core.ops._checks import check_finite, check_floating, check_mask, check_rank, check_same
from core.ops.backend import resolve_backend


def causal_mask(len_q: int, len_k: int, device: torch.device | None = None) -> torch.Tensor:
    """Boolean ``[Lq, Lk]`` mask, True where key j may be seen by query i: ``j <= i + Lk - Lq``.

    Bottom-right aligned (as FlashAttention ≥ 2.1), so the last query sees every key; for Lq == Lk it is
    the usual lower triangle.
    """
    rows = torch.arange(len_q, device=device)[:, None]
    cols = torch.arange(len_k, device=device)[None, :]
    return cols <= rows + (len_k - len_q)


def merge_mask_and_bias(
    mask: torch.Tensor | None,
    bias: torch.Tensor | None,
    causal: bool,
    len_q: int,
    len_k: int,
    device: torch.device,
) -> torch.Tensor | None:
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
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """PyTorch path: SDPA (fused on the CPU too); its safe softmax gives zeros for fully masked rows."""
    attn_mask = merge_mask_and_bias(mask, bias, causal, q.shape[-2], k.shape[-2], q.device)
    if attn_mask is not None and attn_mask.dtype != torch.bool:
        attn_mask = attn_mask.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)


def validate_dense(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    bias: torch.Tensor | None,
) -> None:
    """Checks shared by the dense ops: ``q [B, H, Lq, D]``, ``k [B, H, Lk, D]``, ``v [B, H, Lk, Dv]``."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_rank(name, x, 4, "[B, H, L, D]")
        check_floating(name, x)
        check_finite(name, x)
    check_same("batch sizes", q=q.shape[0], k=k.shape[0], v=v.shape[0])
    check_same("heads", q=q.shape[1], k=k.shape[1], v=v.shape[1])
    check_same("key lengths", k=k.shape[2], v=v.shape[2])
    check_same("head dims", q=q.shape[3], k=k.shape[3])
    check_same("dtypes", q=q.dtype, k=k.dtype, v=v.dtype)
    target = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    if mask is not None:
        check_mask("mask", mask, target)
    if bias is not None:
        check_floating("bias", bias)
        if bias.dim() > 4 or torch.broadcast_shapes(bias.shape, target) != target:
            raise ValueError(f"bias of shape {tuple(bias.shape)} does not broadcast to {target}")
        if torch.isnan(bias).any():
            raise ValueError("bias contains NaN; use mask (or -inf) to hide keys")


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """Softmax attention ``softmax(q kᵀ · scale + bias) v`` — "Attention Is All You Need", §3.2.1.

    Args:
        q: ``[B, H, Lq, D]``; k: ``[B, H, Lk, D]``; v: ``[B, H, Lk, Dv]`` — same float dtype.
        mask: boolean, broadcastable to ``[B, H, Lq, Lk]``; True = may attend.
        bias: additive float logits bias broadcastable to ``[B, H, Lq, Lk]`` (added after scaling).
        causal: hide keys j > i + Lk − Lq (bottom-right aligned).
        scale: defaults to ``1/sqrt(D)``.
        backend: ``"auto" | "reference" | "triton"`` (see :mod:`core.ops.backend`).

    Returns ``[B, H, Lq, Dv]``; a query row that may see no key returns zeros.
    """
    validate_dense(q, k, v, mask, bias)
    scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    if resolve_backend(backend, q.device, "attention") == "triton":
        from core.kernels.attention import attention_triton

        return attention_triton(q, k, v, mask=mask, bias=bias, causal=causal, scale=scale)
    return attention_reference(q, k, v, mask=mask, bias=bias, causal=causal, scale=scale)
