"""Scattered linear attention (ScatterFormer, He et al. 2024, §3.2).

Linear attention with φ = ReLU applied independently inside every segment (a window of voxels) of a packed
sequence: per segment ``KV = Σ φ(k)ᵀ v`` (``[H, D, Dv]``) and ``z = Σ φ(k)`` (``[H, D]``), then each token's
output is ``φ(q) KV / (φ(q)·z + ε)`` with ε = 1e-6 guarding empty or all-zero windows. Cost is O(T·D·Dv),
linear in the number of tokens, whatever the window sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from core.ops._checks import check_attention_inputs, check_cu_seqlens, check_same
from core.ops._segments import segment_ids
from core.ops.backend import dispatch

DENOMINATOR_EPS = 1e-6


def scattered_linear_attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    cu_seqlens: Tensor,
    eps: float,
) -> Tensor:
    """PyTorch path without padding: each segment's ``KV`` and ``z`` summed from its tokens with
    ``index_add`` (the per-token outer products ``φ(k)ᵀ v`` are ``[T, H, D, Dv]``), then gathered
    back to the tokens. Memory and time stay linear in T whatever the segment sizes; padding to the
    longest segment would cost N·Lmax (ScatterFormer's windows run from 1 to thousands of voxels)."""
    phi_q, phi_k = F.relu(q), F.relu(k)
    segment = segment_ids(cu_seqlens, q.shape[0])
    count = cu_seqlens.numel() - 1
    outer = phi_k.unsqueeze(-1) * v.unsqueeze(-2)  # [T, H, D, Dv]
    kv = outer.new_zeros(count, *outer.shape[1:]).index_add_(0, segment, outer)
    z = phi_k.new_zeros(count, *phi_k.shape[1:]).index_add_(0, segment, phi_k)
    numerator = torch.einsum("thd,thde->the", phi_q, kv[segment])
    denominator = (phi_q * z[segment]).sum(-1, keepdim=True) + eps
    return numerator / denominator


def scattered_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    cu_seqlens: Tensor,
    *,
    eps: float = DENOMINATOR_EPS,
    backend: str | None = None,
) -> Tensor:
    """ScatterFormer's SLA over packed segments.

    Args:
        q: ``[T, H, D]``; tokens of one segment are contiguous.
        k: ``[T, H, D]``.
        v: ``[T, H, Dv]``.
        cu_seqlens: int32 ``[N+1]``; starts at 0, non-decreasing, ends at T.
        eps: denominator guard (1e-6 in the paper's code).

    Returns ``[T, H, Dv]``.
    """
    check_attention_inputs(q, k, v, "[T, H, D]", length_dim=0)
    check_same("packed lengths", q=q.shape[0], k=k.shape[0])
    check_cu_seqlens(cu_seqlens, q.shape[0])
    return dispatch(
        "scattered_linear_attention", backend, q=q, k=k, v=v, cu_seqlens=cu_seqlens, eps=eps
    )
