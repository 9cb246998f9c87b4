"""Shared fixtures of the traffic app's tests: a small random directed road graph."""

from __future__ import annotations

import numpy as np
import pytest

from apps.traffic.graph import SensorGraph


def random_graph(n: int, seed: int = 0, degree: float = 3.0) -> SensorGraph:
    """A directed graph on n sensors, each with ``degree`` random out-edges on average (weights in
    (0.1, 1]), plus a chain 0 → 1 → … so no sensor is isolated."""
    rng = np.random.default_rng(seed)
    adjacency = (rng.random((n, n)) < degree / n) * rng.uniform(0.1, 1.0, (n, n))
    adjacency[np.arange(n - 1), np.arange(1, n)] = 1.0
    return SensorGraph.from_adjacency(adjacency, [f"s{i}" for i in range(n)])


@pytest.fixture
def graph() -> SensorGraph:
    return random_graph(10)
