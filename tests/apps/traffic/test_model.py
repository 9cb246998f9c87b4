"""STTN: shapes, the fast Chebyshev path against torch-geometric's, directed spatial attention,
rollout, and a tiny-batch overfit that proves the network learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apps.traffic.graph import ChebGraphConv, SensorGraph, kilometres, laplacian_eigenvectors
from apps.traffic.model import STTN, STTNConfig
from core.inspect import record
from tests.apps.traffic.conftest import random_graph

SMALL = STTNConfig(d_model=16, n_heads=2, ffn_dim=32, num_blocks=2, dropout=0.0)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_cheb_conv_matches_torch_geometric(k, gen):
    graph = random_graph(13, seed=k)
    conv = ChebGraphConv(5, 7, k, graph)
    x = torch.randn(3, 4, 13, 5, generator=gen, requires_grad=True)
    fast = conv(x)
    reference = conv.message_passing(x)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    (grad_fast,) = torch.autograd.grad(fast.square().sum(), x)
    (grad_reference,) = torch.autograd.grad(reference.square().sum(), x)
    torch.testing.assert_close(grad_fast, grad_reference, rtol=1e-5, atol=1e-5)


def test_cheb_conv_follows_edge_direction():
    """A signal on sensor 0 of the chain 0 → 1 → 2 reaches sensor 1 (downstream) in one hop, and
    nothing flows back to an upstream sensor that has no edge from it."""
    adjacency = np.zeros((3, 3))
    adjacency[0, 1] = adjacency[1, 2] = 1.0
    graph = SensorGraph.from_adjacency(adjacency, ["a", "b", "c"])
    conv = ChebGraphConv(1, 1, 2, graph)
    with torch.no_grad():
        conv.lins[0].weight.zero_()
        conv.lins[1].weight.fill_(1.0)
        conv.bias.zero_()
    x = torch.tensor([[1.0], [0.0], [0.0]])
    out = conv(x)[:, 0]
    assert out[1] != 0 and out[2] == 0 and out[0] == 0


def test_laplacian_eigenvectors_start_with_the_smoothest(graph):
    vectors = laplacian_eigenvectors(graph, 16)
    assert vectors.shape == (10, 16)
    assert torch.all(vectors[:, 10:] == 0)  # more columns than sensors: zero padding
    gram = vectors[:, :10].T @ vectors[:, :10]
    torch.testing.assert_close(gram, torch.eye(10), atol=1e-5, rtol=0)


def test_forward_shapes_and_rollout(graph, gen):
    x = torch.randn(2, 12, 10, 2, generator=gen)
    future = torch.rand(2, 12, 10, 1, generator=gen)
    direct = STTN(SMALL, graph, in_channels=2, history=12, horizon=12).eval()
    assert direct(x).shape == (2, 12, 10)
    torch.testing.assert_close(direct.forecast(x, future), direct(x))
    stepwise = STTN(
        STTNConfig(d_model=16, n_heads=2, ffn_dim=32, dropout=0.0, rollout=True), graph, 2, 12, 12
    ).eval()
    assert stepwise(x).shape == (2, 1, 10)
    rolled = stepwise.forecast(x, future)
    assert rolled.shape == (2, 12, 10)
    torch.testing.assert_close(rolled[:, :1], stepwise(x))  # the first step is one forward
    shifted = torch.cat([x[:, 1:], torch.cat([rolled[:, :1, :, None], future[:, :1]], -1)], 1)
    torch.testing.assert_close(rolled[:, 1:2], stepwise(shifted))  # the second sees the first


def test_spatial_attention_is_directed(graph, gen):
    """q and k are separate projections: the learned sensor-to-sensor weights are not symmetric."""
    model = STTN(SMALL, graph, 2, 12, 12).eval()
    with torch.no_grad(), record(model, mode="weights") as recording:
        model(torch.randn(1, 12, 10, 2, generator=gen))
    [name] = [n for n in recording.weights if n.startswith("blocks.0.spatial")]
    weights = recording.weights[name][0].weights[0]  # [H, N, N] of the first step
    assert weights.shape == (2, 10, 10)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 10))
    assert (weights - weights.transpose(-1, -2)).abs().max() > 1e-3


def test_overfits_a_tiny_batch(graph, gen):
    torch.manual_seed(0)
    model = STTN(SMALL, graph, 2, 12, 12)
    x = torch.randn(2, 12, 10, 2, generator=gen)
    y = torch.randn(2, 12, 10, generator=gen)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    first = None
    for _ in range(120):
        optimizer.zero_grad()
        loss = (model(x) - y).abs().mean()
        loss.backward()
        optimizer.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.2 * first


def test_kilometres_between_coordinates():
    points = np.array([[34.0, -118.0], [34.1, -118.0], [34.0, -117.9]])  # 0.1° north, 0.1° east
    km = kilometres(points)
    assert np.linalg.norm(km[1] - km[0]) == pytest.approx(11.12, rel=1e-3)
    east = 11.12 * np.cos(np.radians(points[:, 0].mean()))
    assert np.linalg.norm(km[2] - km[0]) == pytest.approx(east, rel=1e-3)
