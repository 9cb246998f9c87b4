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
from core.ops._segments import pad_segments, unpad_segments
from core.ops.backend import dispatch

DENOMINATOR_EPS = 1e-6


def scattered_linear_attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    cu_seqlens: Tensor,
    eps: float,
) -> Tensor:
    """PyTorch path: pad segments to ``[N, Lmax, H, D]`` (padding is φ-neutral: φ(0) = 0), two einsums."""
    phi_q, valid = pad_segments(F.relu(q), cu_seqlens)
    phi_k, _ = pad_segments(F.relu(k), cu_seqlens)
    v_pad, _ = pad_segments(v, cu_seqlens)
    kv = torch.einsum("nlhd,nlhe->nhde", phi_k, v_pad)
    z = phi_k.sum(dim=1)
    numerator = torch.einsum("nlhd,nhde->nlhe", phi_q, kv)
    denominator = torch.einsum("nlhd,nhd->nlh", phi_q, z) + eps
    return unpad_segments(numerator / denominator.unsqueeze(-1), valid)


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
