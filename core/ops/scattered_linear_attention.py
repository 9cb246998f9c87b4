"""Scattered linear attention (ScatterFormer, He et al. 2024, §3.2).

Linear attention with φ = ReLU applied independently inside every segment (a window of voxels) of a packed
sequence: per segment ``KV = Σ φ(k)ᵀ v`` (``[H, D, Dv]``) and ``z = Σ φ(k)`` (``[H, D]``), then each token's
output is ``φ(q) KV / (φ(q)·z + ε)`` with ε = 1e-6 guarding empty or all-zero windows. Cost is O(T·D·Dv),
linear in the number of tokens, whatever the window sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.ops._checks import check_cu_seqlens, check_finite, check_floating, check_rank, check_same
from core.ops._segments import pad_segments, unpad_segments
from core.ops.backend import resolve_backend

DENOMINATOR_EPS = 1e-6


def scattered_linear_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    eps: float = DENOMINATOR_EPS,
) -> torch.Tensor:
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
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    *,
    eps: float = DENOMINATOR_EPS,
    backend: str | None = None,
) -> torch.Tensor:
    """ScatterFormer's SLA over packed segments.

    Args:
        q: ``[T, H, D]``; tokens of one segment are contiguous.
        k: ``[T, H, D]``.
        v: ``[T, H, Dv]``.
        cu_seqlens: int32 ``[N+1]``; starts at 0, non-decreasing, ends at T.
        eps: denominator guard (1e-6 in the paper's code).

    Returns ``[T, H, Dv]``.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_rank(name, x, 3, "[T, H, D]")
        check_floating(name, x)
        check_finite(name, x)
    check_same("packed lengths", q=q.shape[0], k=k.shape[0], v=v.shape[0])
    check_same("heads", q=q.shape[1], k=k.shape[1], v=v.shape[1])
    check_same("head dims", q=q.shape[2], k=k.shape[2])
    check_same("dtypes", q=q.dtype, k=k.dtype, v=v.dtype)
    check_cu_seqlens(cu_seqlens, q.shape[0])
    if resolve_backend(backend, q.device, "scattered_linear_attention") == "triton":
        from core.kernels.scattered_linear_attention import scattered_linear_attention_triton

        return scattered_linear_attention_triton(q, k, v, cu_seqlens, eps=eps)
    return scattered_linear_attention_reference(q, k, v, cu_seqlens, eps=eps)
