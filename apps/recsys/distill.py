"""TED: transition-aware embedding distillation (§3.3 of the MQSA-TED paper).

The teacher is the item→next-item transition counts of the training sequences: for item i with
counts ``c_i`` over the N items, ``p_i = softmax((c_i / max_j c_ij) / τ)``. The student is the item
embeddings themselves: ``q_i = softmax(√d · e_i · Eᵀ / τ)``. The loss is the cross-entropy
``−Σ_j p_ij log q_ij``, weighted by λ in the training loss.

``p_i`` is dense (every item gets ``exp(0) = 1`` before normalising) but determined by the sparse
counts: ``p_ij = (1 + w_ij) / Z_i`` with ``w_ij = exp(c_ij / max c_i / τ) − 1`` on the observed
transitions and 0 elsewhere, ``Z_i = N + Σ_j w_ij``. So ``Σ_j p_ij s_j = (Σ_j s_j + Σ_obs w_ij
s_j) / Z_i`` and nothing ``[rows, N]`` is ever built besides the chunked log-partition of the
student (:func:`apps.recsys.softmax.log_partition`). Items without a recorded transition have no
teacher and are left out (the official code would distil a uniform row into them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from apps.recsys.softmax import log_partition


def transition_counts(
    sequences: list[np.ndarray], lengths: np.ndarray, num_items: int
) -> sp.csr_matrix:
    """Counts of item a directly followed by item b in the training prefixes
    ``sequences[u][:lengths[u]]``: CSR ``[N + 1, N + 1]`` indexed by item id (row and column 0
    unused). Only training prefixes count, so no validation or test item leaks into the teacher."""
    prefixes = [seq[:n] for seq, n in zip(sequences, lengths, strict=True) if n >= 2]
    if not prefixes:
        return sp.csr_matrix((num_items + 1, num_items + 1), dtype=np.float64)
    flat = np.concatenate(prefixes)
    ends = np.cumsum([len(p) for p in prefixes])
    follows = np.ones(len(flat) - 1, dtype=bool)
    follows[ends[:-1] - 1] = (
        False  # the last item of a user is not followed by the next user's first
    )
    src, dst = flat[:-1][follows], flat[1:][follows]
    shape = (num_items + 1, num_items + 1)
    counts = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=shape)
    counts.sum_duplicates()
    return counts


@dataclass
class TeacherRows:
    """The teacher rows of a batch's distinct input items, as tensors.

    ``heads [R]`` item ids with ``occurrences [R]`` (how often each appears among the batch's
    inputs: the loss weights), and the observed transitions ``row [nnz]`` (index into heads),
    ``column [nnz]`` (0-based item row, i.e. item id − 1), ``weight [nnz]`` (``w_ij``), with
    ``norm [R]`` (``Z_i``).
    """

    heads: torch.Tensor
    occurrences: torch.Tensor
    row: torch.Tensor
    column: torch.Tensor
    weight: torch.Tensor
    norm: torch.Tensor

    def __len__(self) -> int:
        return len(self.heads)

    def next_items(self, head: int, k: int) -> list[tuple[int, float]] | None:
        """The teacher's ``k`` likeliest next items after item ``head`` as ``(item id,
        probability)``, among its observed transitions; None when ``head`` has no teacher row."""
        (index,) = (self.heads == head).nonzero(as_tuple=True)
        if not len(index):
            return None
        entries = (self.row == index[0]).nonzero(as_tuple=True)[0]
        order = entries[self.weight[entries].argsort(descending=True)[:k]]
        norm = float(self.norm[index[0]])
        return [
            (int(c) + 1, (1.0 + float(w)) / norm)
            for c, w in zip(self.column[order], self.weight[order], strict=True)
        ]


class TransitionTeacher:
    """TED's teacher from transition counts ``[N + 1, N + 1]`` at temperature ``tau``."""

    def __init__(self, counts: sp.csr_matrix, tau: float = 0.1) -> None:
        if tau <= 0:
            raise ValueError(f"the distillation temperature must be positive, got {tau}")
        self.num_items = counts.shape[0] - 1
        weights = sp.csr_matrix(counts, dtype=np.float64, copy=True)
        weights.eliminate_zeros()
        peak = weights.max(axis=1).toarray().ravel()
        per_row = np.diff(weights.indptr)
        weights.data = np.expm1(weights.data / np.repeat(peak, per_row) / tau)
        self.weights = weights
        self.norm = self.num_items + np.asarray(weights.sum(axis=1)).ravel()
        self.has_row = per_row > 0

    def rows(self, inputs: np.ndarray) -> TeacherRows:
        """The teacher rows of the distinct items of ``inputs`` (item ids, 0 = padding, any
        shape) that have a recorded transition."""
        heads, occurrences = np.unique(inputs[inputs > 0], return_counts=True)
        keep = self.has_row[heads]
        heads, occurrences = heads[keep], occurrences[keep]
        block = self.weights[heads].tocoo()
        return TeacherRows(
            heads=torch.from_numpy(heads).long(),
            occurrences=torch.from_numpy(occurrences).float(),
            row=torch.from_numpy(block.row).long(),
            column=torch.from_numpy(block.col - 1).long(),
            weight=torch.from_numpy(block.data).float(),
            norm=torch.from_numpy(self.norm[heads]).float(),
        )

    def probabilities(self, items: np.ndarray) -> np.ndarray:
        """The dense teacher ``p_i`` ``[R, N]`` of ``items`` (for tests and figures, not training)."""
        dense = self.weights[items].toarray()[:, 1:] + 1.0
        return dense / self.norm[items, None]


def distillation_loss(
    student: torch.Tensor, table: torch.Tensor, teacher: TeacherRows, tau: float
) -> torch.Tensor:
    """Per-row cross-entropy ``−Σ_j p_ij log q_ij`` ``[R]``, with ``q_i = softmax(student_i ·
    tableᵀ / τ)``: ``student [R, d]`` (the heads' scaled, dropped-out embeddings), ``table [N, d]``
    (every item's embedding)."""
    observed = torch.zeros_like(student).index_add_(
        0, teacher.row, teacher.weight[:, None] * table[teacher.column]
    )
    teacher_mean = (table.sum(0) + observed) / teacher.norm[:, None]  # Σ_j p_ij e_j
    expected_score = (student * teacher_mean).sum(-1) / tau
    return log_partition(student, table, 1.0 / tau) - expected_score
