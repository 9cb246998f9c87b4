"""spconv on the CPU: sparse convolutions match a dense ``conv3d`` forward and backward once the
shim is on, and the backward fails without it (so the shim is still needed)."""

from __future__ import annotations

import sys

import pytest
import spconv.pytorch as spconv
import torch
import torch.nn.functional as F
from spconv.pytorch import cppcore

from apps.pointcloud.sparse import enable_cpu_backward, sparse_tensor, to_dense, torch_threads

SHAPE = (6, 7, 8)  # (nz, ny, nx)
BATCH = 2
SITES = 40
IN_CH, OUT_CH = 3, 4


def random_coords(generator: torch.Generator) -> torch.Tensor:
    """``SITES`` distinct (b, z, y, x) sites, int64 ``[SITES, 4]``."""
    nz, ny, nx = SHAPE
    flat = torch.randperm(BATCH * nz * ny * nx, generator=generator)[:SITES]
    per_item = nz * ny * nx
    b, rest = flat // per_item, flat % per_item
    return torch.stack([b, rest // (ny * nx), (rest // nx) % ny, rest % nx], dim=1)


def densify(features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Features ``[V, C]`` written into a zero ``[B, C, nz, ny, nx]`` grid one site at a time."""
    grid = features.new_zeros(BATCH, features.shape[1], *SHAPE)
    for row, (b, z, y, x) in enumerate(coords.tolist()):
        grid[b, :, z, y, x] = features[row]
    return grid


def at_sites(dense: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Rows of a ``[B, C, nz, ny, nx]`` grid at coords ``[V, 4]``: ``[V, C]``."""
    b, z, y, x = coords.long().unbind(dim=1)
    return dense[b, :, z, y, x]


def seeded_conv(conv: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    """The conv in float64 with weight and bias drawn from the generator."""
    conv = conv.double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator, dtype=torch.float64))
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator, dtype=torch.float64))
    return conv


@pytest.mark.parametrize(
    ("conv", "stride"),
    [
        (spconv.SubMConv3d(IN_CH, OUT_CH, 3, padding=1, bias=True), 1),
        (spconv.SparseConv3d(IN_CH, OUT_CH, 3, stride=2, padding=1, bias=True), 2),
    ],
    ids=["subm", "strided"],
)
def test_sparse_conv_matches_dense_conv3d_forward_and_backward(
    conv: torch.nn.Module, stride: int
) -> None:
    generator = torch.Generator().manual_seed(stride)
    conv = seeded_conv(conv, generator)
    assert conv.weight.shape == (OUT_CH, 3, 3, 3, IN_CH)  # spconv 2.x: [out, kz, ky, kx, in]
    coords = random_coords(generator)
    features = torch.randn(SITES, IN_CH, generator=generator, dtype=torch.float64)

    sparse_in = features.clone().requires_grad_()
    out = conv(sparse_tensor(sparse_in, coords, SHAPE, BATCH))
    dense_in = features.clone().requires_grad_()
    weight = conv.weight.detach().clone().requires_grad_()
    bias = conv.bias.detach().clone().requires_grad_()
    dense_out = F.conv3d(
        densify(dense_in, coords), weight.permute(0, 4, 1, 2, 3), bias, stride=stride, padding=1
    )

    if stride == 1:  # submanifold: the output sites are the input sites
        assert torch.equal(out.indices.long(), coords.to(out.indices.device))
    else:  # an output site is active when its receptive field holds an active input
        occupancy = densify(torch.ones(SITES, 1, dtype=torch.float64), coords)
        reached = F.conv3d(occupancy, torch.ones(1, 1, 3, 3, 3, dtype=torch.float64), None, 2, 1)
        assert sorted(out.indices.tolist()) == sorted(
            [b, z, y, x] for b, _, z, y, x in torch.nonzero(reached > 0).tolist()
        )
    torch.testing.assert_close(out.features, at_sites(dense_out, out.indices))

    loss_weights = torch.randn(out.features.shape, generator=generator, dtype=torch.float64)
    (out.features * loss_weights).sum().backward()
    (at_sites(dense_out, out.indices) * loss_weights).sum().backward()
    torch.testing.assert_close(sparse_in.grad, dense_in.grad)
    torch.testing.assert_close(conv.weight.grad, weight.grad)
    torch.testing.assert_close(conv.bias.grad, bias.grad)


def test_to_dense_places_each_feature_at_its_site() -> None:
    generator = torch.Generator().manual_seed(5)
    coords = random_coords(generator)
    features = torch.randn(SITES, IN_CH, generator=generator)
    dense = to_dense(sparse_tensor(features, coords, SHAPE, BATCH))
    torch.testing.assert_close(dense, densify(features, coords))


def test_sparse_tensor_rejects_mismatched_coords() -> None:
    with pytest.raises(ValueError, match=r"\[V, 4\]"):
        sparse_tensor(torch.zeros(3, 2), torch.zeros(4, 4, dtype=torch.long), SHAPE, BATCH)


def test_enable_cpu_backward_is_idempotent() -> None:
    patched = cppcore.get_current_stream
    enable_cpu_backward()
    assert cppcore.get_current_stream is patched
    assert sys.modules["spconv.pytorch.ops"].get_current_stream is patched
    if not torch.cuda.is_available():
        assert patched() == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="the failure only happens without CUDA")
def test_backward_fails_without_the_shim(monkeypatch: pytest.MonkeyPatch) -> None:
    patched = cppcore.get_current_stream
    for name, module in list(sys.modules.items()):
        if name.startswith("spconv") and getattr(module, "get_current_stream", None) is patched:
            monkeypatch.setattr(module, "get_current_stream", patched.__wrapped__)
    generator = torch.Generator().manual_seed(7)
    conv = seeded_conv(spconv.SubMConv3d(IN_CH, OUT_CH, 3, padding=1, bias=True), generator)
    features = torch.randn(SITES, IN_CH, generator=generator, dtype=torch.float64)
    out = conv(sparse_tensor(features.requires_grad_(), random_coords(generator), SHAPE, BATCH))
    with pytest.raises(AssertionError, match="Torch not compiled with CUDA enabled"):
        out.features.sum().backward()


def test_strided_conv_is_right_on_two_threads() -> None:
    """spconv's CPU ``indice_conv`` races with several torch threads (wrong sums where inputs share
    an output site); the shim serialises it. Without the shim most of these trials fail."""
    with torch_threads(2):
        for _ in range(20):
            generator = torch.Generator().manual_seed(2)
            conv = seeded_conv(spconv.SparseConv3d(IN_CH, OUT_CH, 3, 2, padding=1), generator)
            coords = random_coords(generator)
            features = torch.randn(SITES, IN_CH, generator=generator, dtype=torch.float64)
            out = conv(sparse_tensor(features, coords, SHAPE, BATCH))
            weight = conv.weight.permute(0, 4, 1, 2, 3)
            dense = F.conv3d(densify(features, coords), weight, conv.bias, stride=2, padding=1)
            torch.testing.assert_close(out.features, at_sites(dense, out.indices))
