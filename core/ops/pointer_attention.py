"""Additive (Bahdanau) attention used as a pointer — Pointer Networks (Vinyals et al. 2015, §2.3).

``u_ij = vᵀ tanh(W₁ e_j + W₂ d_i)``: a score for every input position j at every decoder step i; the
softmax over j is the distribution of "which input comes next". Positions already chosen (or padding) are
masked to ``-inf`` so they can never be pointed at.
"""

from __future__ import annotations

import torch

from core.ops._checks import check_finite, check_floating, check_mask, check_rank, check_same
from core.ops.backend import resolve_backend


def pointer_attention_reference(
    query: torch.Tensor, keys: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """PyTorch path: broadcast add ``[B, T, 1, A] + [B, 1, N, A]``, tanh, contract with v."""
    scores = torch.tanh(query.unsqueeze(2) + keys.unsqueeze(1)) @ v
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores


def pointer_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """Pointer logits ``u[b, i, j] = vᵀ tanh(keys[b, j] + query[b, i])``.

    Args:
        query: ``W₂ d`` — projected decoder states ``[B, T, A]`` (or ``[B, A]`` for one step).
        keys: ``W₁ e`` — projected encoder states ``[B, N, A]``.
        v: ``[A]``.
        mask: boolean, broadcastable to ``[B, T, N]`` (or ``[B, N]`` for one step); True = may be
            pointed at. Every row must keep at least one position (an all-masked row has no softmax).

    Returns logits ``[B, T, N]`` (``[B, N]`` for a single step), ``-inf`` where masked.
    """
    single_step = query.dim() == 2
    if single_step:
        query = query.unsqueeze(1)
        if mask is not None and mask.dim() == 2:
            mask = mask.unsqueeze(1)
    check_rank("query", query, 3, "[B, T, A] or [B, A]")
    check_rank("keys", keys, 3, "[B, N, A]")
    check_rank("v", v, 1, "[A]")
    for name, x in (("query", query), ("keys", keys), ("v", v)):
        check_floating(name, x)
        check_finite(name, x)
    check_same("batch sizes", query=query.shape[0], keys=keys.shape[0])
    check_same("attention dims", query=query.shape[2], keys=keys.shape[2], v=v.shape[0])
    if mask is not None:
        target = (query.shape[0], query.shape[1], keys.shape[1])
        check_mask("mask", mask, target)
        if not mask.expand(target).any(-1).all():
            raise ValueError("mask leaves a decoder step with no input to point at")
    resolve_backend(backend, query.device, "pointer_attention", has_kernel=False)
    scores = pointer_attention_reference(query, keys, v, mask)
    return scores.squeeze(1) if single_step else scores
