"""Statistics against hand computations: uniform rows, one-hot rows, sinks, top-k, distance, CSV."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from core.inspect import head_statistics, sink_fraction, top_k_mass, write_statistics_csv
from tests.core.inspect.naive import entropy


def uniform_over(allowed: torch.Tensor) -> torch.Tensor:
    weights = allowed.double()
    return weights / weights.sum(-1, keepdim=True).clamp_min(1)


def test_uniform_rows_have_normalised_entropy_one(gen: torch.Generator) -> None:
    allowed = torch.rand(2, 3, 6, 9, generator=gen) < 0.7
    allowed[..., 0] = True
    allowed[0, 0, 0] = False  # a row that sees nothing is left out
    allowed[0, 0, 0, 4] = True
    allowed[1, 2, 3] = False
    weights = uniform_over(allowed)
    stats = head_statistics(weights, allowed)
    keys = allowed.sum(-1).double()
    seen = keys > 0
    torch.testing.assert_close(stats.normalized_entropy, torch.ones(3, dtype=torch.float64))
    for head in range(3):
        n = keys[:, head][seen[:, head]]
        torch.testing.assert_close(stats.entropy[head], n.log().mean())
        torch.testing.assert_close(stats.effective_keys[head], n.mean())
        torch.testing.assert_close(stats.top1_mass[head], (1 / n).mean())
        torch.testing.assert_close(stats.topk_mass[head], (n.clamp(max=5) / n).mean())


def test_one_hot_rows(gen: torch.Generator) -> None:
    weights = torch.zeros(4, 2, 7, 11, dtype=torch.float64)
    weights[..., 3] = 1.0  # every query attends key 3 only
    weights[1, 1, :, 3], weights[1, 1, :, 8] = 0.0, 1.0  # except one instance of head 1
    stats = head_statistics(weights)
    zeros = torch.zeros(2, dtype=torch.float64)
    torch.testing.assert_close(stats.entropy, zeros)
    torch.testing.assert_close(stats.normalized_entropy, zeros)
    torch.testing.assert_close(stats.effective_keys, zeros + 1)
    torch.testing.assert_close(stats.top1_mass, zeros + 1)
    torch.testing.assert_close(stats.sink_score, zeros + 1)
    assert stats.sink_key.tolist() == [3, 3]  # the most frequent sink across instances
    distance = (torch.arange(7)[:, None] - torch.arange(11)[None, :]).abs().double()
    stats = head_statistics(weights, distance=distance)
    expected = (torch.arange(7) - 3).abs().double().mean()
    torch.testing.assert_close(stats.mean_distance[0], expected)


def test_sink_score_is_the_strongest_mean_column(gen: torch.Generator) -> None:
    weights = torch.softmax(torch.randn(3, 2, 5, 6, generator=gen, dtype=torch.float64) * 2, -1)
    stats = head_statistics(weights)
    column_means = weights.mean(2)  # [N, H, Lk]
    per_instance, keys = column_means.max(-1)
    torch.testing.assert_close(stats.sink_score, per_instance.mean(0))
    for head in range(2):
        votes = torch.bincount(keys[:, head], minlength=6)
        assert stats.sink_key[head] == votes.argmax()
    torch.testing.assert_close(stats.entropy, entropy(weights).mean((0, 2)))


@pytest.mark.parametrize("length", [1, 3, 64, 1000, 1031, 4096])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_top_k_mass_matches_a_sort(gen: torch.Generator, length: int, k: int) -> None:
    weights = torch.rand(3, 4, length, generator=gen) ** 6
    weights[0, 0] = 1.0 / length  # ties everywhere
    expected = weights.sort(-1, descending=True).values[..., :k].sum(-1)
    torch.testing.assert_close(top_k_mass(weights, k), expected)


def test_sink_fraction_and_csv(tmp_path, gen: torch.Generator) -> None:
    sinky = torch.zeros(1, 2, 4, 5, dtype=torch.float64)
    sinky[:, 0, :, 0] = 1.0  # head 0: all weight on key 0
    sinky[:, 1] = 0.2  # head 1: uniform
    flat = torch.full((1, 3, 4, 5), 0.2, dtype=torch.float64)
    statistics = {"a": head_statistics(sinky), "b": head_statistics(flat)}
    assert sink_fraction(statistics) == pytest.approx(1 / 5)
    path = write_statistics_csv(statistics, tmp_path / "stats.csv")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"layer", "head", "statistic", "value"}
    value = {(r["layer"], r["head"], r["statistic"]): float(r["value"]) for r in rows}
    assert value[("a", "0", "sink_score")] == 1.0
    assert value[("a", "1", "normalized_entropy")] == pytest.approx(1.0)
    assert value[("b", "2", "top5_mass")] == pytest.approx(1.0)
    assert value[("a", "all", "sink_fraction")] == 0.5
    assert value[("all", "all", "sink_fraction")] == pytest.approx(0.2)
    assert ("a", "0", "mean_distance") not in value  # not measured: left out
    assert math.isclose(value[("a", "1", "entropy")], math.log(5))
