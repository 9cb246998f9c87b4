"""Additive (Bahdanau) attention used as a pointer — Pointer Networks (Vinyals et al. 2015, §2.3).

``u_ij = vᵀ tanh(W₁ e_j + W₂ d_i)``: a score for every input position j at every decoder step i; the
softmax over j is the distribution of "which input comes next". Positions already chosen (or padding) are
masked to ``-inf`` so they can never be pointed at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from core.ops._checks import (
    check_finite,
    check_floating,
    check_mask,
    check_rank,
    check_same,
    value_checks_enabled,
)
from core.ops.backend import dispatch

CHUNK_ELEMENTS = 1 << 20  # gates per chunk ([b, t, N, A]): 4 MiB of fp32
MIN_CHUNK_ROWS = 8  # batch rows per chunk at any T: fewer leave each op too little work for 2 cores


class AdditiveScores(torch.autograd.Function):
    """``tanh(query[:, :, None] + keys[:, None]) @ v`` over chunks of (batch rows, decoder steps), never
    storing the ``[B, T, N, A]`` activations: the backward recomputes them chunk by chunk.

    Every step of the formula is a pass over B·T·N·A values, so on the CPU the cost is the tanh and
    memory traffic. Chunks of about :data:`CHUNK_ELEMENTS` (at least :data:`MIN_CHUNK_ROWS` batch rows,
    splitting T when rows alone would pass the budget) keep the traffic in cache. The tanh becomes
    ``tanh(x) = 2σ(2x) − 1``, and ``σ(2q + 2k) = 1 / (1 + e^{−2q} e^{−2k})`` needs only the
    ``[B, T, A]`` and ``[B, N, A]`` exponentials: each gate is a multiply-add and a reciprocal instead
    of an exponential (:class:`_Gates`). With ``s`` the gates, the scores are ``2 s·v − Σv`` and
    ``1 − tanh² = 4 s (1 − s)``.
    """

    @staticmethod
    def forward(ctx, query: Tensor, keys: Tensor, v: Tensor) -> Tensor:
        gates = _Gates.of(query, keys)
        ctx.save_for_backward(gates.query_part, gates.keys_part, v)
        ctx.exponential = gates.exponential
        scores = query.new_empty(query.shape[0], query.shape[1], keys.shape[1])
        for rows, steps in _chunks(gates):
            scores[rows, steps] = gates(rows, steps) @ v
        return scores.mul_(2.0).sub_(v.sum())

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        query_part, keys_part, v = ctx.saved_tensors
        gates = _Gates(query_part, keys_part, ctx.exponential)
        grad_query, grad_keys = torch.empty_like(query_part), torch.zeros_like(keys_part)
        grad_v = torch.zeros_like(v)
        # in the forward's dtype, also when the backward is called inside an autocast block
        with torch.autocast(grad.device.type, enabled=False):
            for rows, steps in _chunks(gates):
                gate = gates(rows, steps)  # s, [b, t, N, A]
                g = grad[rows, steps]  # [b, t, N]
                grad_v += g.reshape(1, -1).matmul(gate.reshape(-1, gate.shape[-1])).squeeze(0)
                # dL/dx = g · v · (1 − tanh² x) = 4v · g · s(1 − s); the 4v is applied to the sums
                pre = gate.addcmul_(gate, gate, value=-1.0).mul_(g.unsqueeze(-1))
                grad_query[rows, steps] = pre.sum(2)
                grad_keys[rows] += pre.sum(1)
        four_v = 4.0 * v
        return grad_query.mul_(four_v), grad_keys.mul_(four_v), grad_v.mul_(2.0).sub_(grad.sum())


@dataclass(frozen=True)
class _Gates:
    """``σ(2·(query + keys))`` chunk by chunk, from ``e^{−2q}`` and ``e^{−2k}`` (``exponential``:
    ``1 / (1 + e^{−2q} e^{−2k})``) or from ``2q`` and ``2k`` (the sigmoid of their sum)."""

    query_part: Tensor  # [B, T, A]
    keys_part: Tensor  # [B, N, A]
    exponential: bool

    @staticmethod
    def of(query: Tensor, keys: Tensor) -> _Gates:
        if _exponentials_pay(query, keys):
            return _Gates(torch.exp(query * -2.0), torch.exp(keys * -2.0), exponential=True)
        return _Gates(query * 2.0, keys * 2.0, exponential=False)

    def __call__(self, rows: slice, steps: slice) -> Tensor:
        """The gates of a chunk, ``[b, t, N, A]``, in a fresh buffer."""
        query, keys = self.query_part[rows, steps].unsqueeze(2), self.keys_part[rows].unsqueeze(1)
        if self.exponential:
            return torch.addcmul(query.new_ones(()), query, keys).reciprocal_()
        return torch.add(query, keys).sigmoid_()


def _exponentials_pay(query: Tensor, keys: Tensor) -> bool:
    """Whether to build the gates from exponentials: on the CPU (where the sigmoid's exponential is
    the cost, and reading the range below is free), when the exponentials are far fewer than the gates
    (T·N ≫ T + N: not for single decoding steps), and when ``e^{−2q} e^{−2k}`` stays finite for every
    pair — ``2(max|q| + max|k|)`` below the log of the dtype's largest value, so that no factor
    overflows either and no inf meets a 0."""
    steps, points = query.shape[1], keys.shape[1]
    if query.device.type != "cpu" or not query.numel() or steps * points <= 4 * (steps + points):
        return False
    largest = float(torch.stack([query.detach().abs().amax(), keys.detach().abs().amax()]).sum())
    return 2.0 * largest < math.log(torch.finfo(query.dtype).max) - 1.0


def _chunks(gates: _Gates) -> list[tuple[slice, slice]]:
    """(batch rows, decoder steps) blocks of about :data:`CHUNK_ELEMENTS` gates each."""
    (batch, steps, width), points = gates.query_part.shape, gates.keys_part.shape[1]
    per_step = max(points * width, 1)
    step_block = min(steps, max(1, CHUNK_ELEMENTS // (MIN_CHUNK_ROWS * per_step)))
    row_block = max(1, CHUNK_ELEMENTS // (step_block * per_step))
    return [
        (slice(row, row + row_block), slice(step, step + step_block))
        for row in range(0, batch, row_block)
        for step in range(0, steps, step_block)
    ]


def pointer_attention_reference(
    query: Tensor, keys: Tensor, v: Tensor, mask: Tensor | None
) -> Tensor:
    """PyTorch path: :class:`AdditiveScores` (chunked, cache-sized), then the mask."""
    scores = AdditiveScores.apply(query, keys, v)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores


def pointer_attention(
    query: Tensor,
    keys: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    backend: str | None = None,
) -> Tensor:
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
        if value_checks_enabled(mask) and not mask.expand(target).any(-1).all():
            raise ValueError("mask leaves a decoder step with no input to point at")
    scores = dispatch("pointer_attention", backend, query=query, keys=keys, v=v, mask=mask)
    return scores.squeeze(1) if single_step else scores
