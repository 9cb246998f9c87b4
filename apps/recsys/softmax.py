"""Full-softmax losses over every item without the ``[rows, items]`` logit matrix in memory.

The log-partition ``log Σ_j exp(scale · h·e_j)`` is computed in chunks of rows and its backward
recomputes each chunk's softmax, so a step holds ``[chunk, items]`` scores at a time (about
:data:`CHUNK_ELEMENTS` floats) instead of every position's logits and their softmax. Everything
else in both losses is a gather or a sparse sum, linear in the rows.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

CHUNK_ELEMENTS = 1 << 23  # scores held at once: 32 MiB in float32


def rows_per_chunk(num_items: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(num_items, 1))


class _ChunkedLogSumExp(torch.autograd.Function):
    """Every scale is applied on the ``[rows, d]`` side and ``−lse`` inside the matrix product, so
    each ``[chunk, N]`` block is written once by the product and passed over once by ``exp``."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, table: torch.Tensor, scale: float) -> torch.Tensor:
        scaled = hidden * scale
        chunk = rows_per_chunk(table.shape[0])
        out = hidden.new_empty(hidden.shape[0])
        for start in range(0, hidden.shape[0], chunk):
            rows = slice(start, start + chunk)
            out[rows] = torch.logsumexp(scaled[rows] @ table.T, dim=1)
        ctx.save_for_backward(scaled, table, out)
        ctx.scale = scale
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        scaled, table, lse = ctx.saved_tensors
        weighted = scaled * grad[:, None]  # hidden · grad · scale: grad_table's row factors
        grad_hidden, grad_table = torch.empty_like(scaled), torch.zeros_like(table)
        chunk = rows_per_chunk(table.shape[0])
        for start in range(0, scaled.shape[0], chunk):
            rows = slice(start, start + chunk)
            # d lse / d logits = softmax(logits) = exp(logits − lse)
            softmax = torch.addmm(-lse[rows, None], scaled[rows], table.T).exp_()
            grad_hidden[rows] = softmax @ table * (grad[rows] * ctx.scale)[:, None]
            grad_table.addmm_(softmax.T, weighted[rows])
        return grad_hidden, grad_table, None


def log_partition(hidden: torch.Tensor, table: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``log Σ_j exp(scale · hidden_r · table_j)`` per row: ``hidden [R, d]``, ``table [N, d]`` →
    ``[R]``, chunked over rows in forward and backward (see the module docstring)."""
    return _ChunkedLogSumExp.apply(hidden, table, scale)


def full_softmax_cross_entropy(
    hidden: torch.Tensor, table: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of the softmax over all items: ``hidden [R, d]``, ``table [N, d]``, ``targets
    [R]`` (0-based rows of ``table``) → ``[R]``."""
    return log_partition(hidden, table) - (hidden * table[targets]).sum(-1)


def sampled_binary_cross_entropy(
    hidden: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor
) -> torch.Tensor:
    """SASRec's loss (§3.5): ``−log σ(h·e⁺) − log(1 − σ(h·e⁻))`` with one sampled negative a
    position. ``hidden [R, d]``, ``positives``/``negatives [R, d]`` (their embeddings) → ``[R]``."""
    logsig = torch.nn.functional.logsigmoid
    return -logsig((hidden * positives).sum(-1)) - logsig(-(hidden * negatives).sum(-1))
