"""The chunked full-softmax losses and TED against dense computations on random inputs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from apps.recsys import softmax
from apps.recsys.distill import TransitionTeacher, distillation_loss, transition_counts
from apps.recsys.softmax import full_softmax_cross_entropy, log_partition


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force several chunks even on tiny inputs, so chunk boundaries are exercised."""
    monkeypatch.setattr(softmax, "CHUNK_ELEMENTS", 64)


def test_log_partition_matches_logsumexp_values_and_gradients(
    gen: torch.Generator, small_chunks: None
) -> None:
    hidden = torch.randn(37, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    table = torch.randn(23, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(37, generator=gen, dtype=torch.float64)
    ours = log_partition(hidden, table, 2.5)
    (ours * upstream).sum().backward()
    got = hidden.grad.clone(), table.grad.clone()
    hidden.grad = table.grad = None
    reference = torch.logsumexp(hidden @ table.T * 2.5, dim=1)
    (reference * upstream).sum().backward()
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(got[0], hidden.grad)
    torch.testing.assert_close(got[1], table.grad)


def test_full_softmax_cross_entropy_is_torch_cross_entropy(
    gen: torch.Generator, small_chunks: None
) -> None:
    hidden, table = torch.randn(19, 6, generator=gen), torch.randn(11, 6, generator=gen)
    targets = torch.randint(0, 11, (19,), generator=gen)
    expected = torch.nn.functional.cross_entropy(hidden @ table.T, targets, reduction="none")
    torch.testing.assert_close(full_softmax_cross_entropy(hidden, table, targets), expected)


def test_transition_counts_stay_inside_each_training_prefix() -> None:
    sequences = [np.array([1, 2, 3, 4]), np.array([3, 1, 2]), np.array([5, 2])]
    counts = transition_counts(sequences, np.array([3, 3, 1]), num_items=5).toarray()
    expected = np.zeros((6, 6))
    expected[1, 2] = 2  # 1→2 in both users
    expected[2, 3] = expected[3, 1] = 1
    np.testing.assert_array_equal(counts, expected)  # 3→4 is past user 0's prefix; user 2 has one


def test_teacher_rows_sum_to_one_and_follow_the_scaled_counts() -> None:
    counts = sp.csr_matrix(np.array([[0, 0, 0, 0], [0, 0, 4, 2], [0, 1, 0, 0], [0, 0, 0, 0]]))
    teacher = TransitionTeacher(counts, tau=0.5)
    p = teacher.probabilities(np.array([1, 2]))
    np.testing.assert_allclose(p.sum(1), 1.0)
    logits = np.array([[0, 4 / 4, 2 / 4], [1 / 1, 0, 0]]) / 0.5
    np.testing.assert_allclose(p, np.exp(logits) / np.exp(logits).sum(1, keepdims=True))


def test_teacher_rows_skip_padding_and_items_without_transitions() -> None:
    counts = sp.csr_matrix(np.array([[0, 0, 0, 0], [0, 0, 4, 2], [0, 1, 0, 0], [0, 0, 0, 0]]))
    rows = TransitionTeacher(counts).rows(np.array([[0, 1, 3, 1], [0, 0, 2, 3]]))
    assert rows.heads.tolist() == [1, 2]  # 3 never leads anywhere: no teacher
    assert rows.occurrences.tolist() == [2.0, 1.0]


def test_distillation_loss_is_the_dense_cross_entropy(gen: torch.Generator) -> None:
    rng = np.random.default_rng(0)
    dense = rng.poisson(0.4, (13, 13)) * (rng.random((13, 13)) < 0.3)
    dense[0] = dense[:, 0] = 0
    teacher = TransitionTeacher(sp.csr_matrix(dense), tau=0.1)
    inputs = rng.integers(0, 13, (4, 9))
    rows = teacher.rows(inputs)
    table = torch.randn(12, 5, generator=gen, dtype=torch.float64)
    student = table[rows.heads - 1] * 5**0.5
    rows.weight, rows.norm = rows.weight.double(), rows.norm.double()
    loss = distillation_loss(student, table, rows, tau=0.1)
    p = torch.from_numpy(teacher.probabilities(rows.heads.numpy()))
    log_q = torch.log_softmax(student @ table.T / 0.1, dim=1)
    torch.testing.assert_close(loss, -(p * log_q).sum(1))
