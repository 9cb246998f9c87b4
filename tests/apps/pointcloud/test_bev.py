"""BEV scatter and backbone: pillars land at their (b, y, x) cell and receive their gradient, bad
coordinates are refused, and the backbone's output has the promised channels, stride and size for
odd and even grids."""

from __future__ import annotations

import math

import pytest
import torch

from apps.pointcloud.bev import BEVBackbone, scatter_to_bev


def random_pillars(
    gen: torch.Generator, batch_size: int, ny: int, nx: int, count: int, channels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """features [V, C] and unique coords [V, 4] (b, 0, y, x) drawn without replacement."""
    cells = torch.randperm(batch_size * ny * nx, generator=gen)[:count]
    b, rest = cells // (ny * nx), cells % (ny * nx)
    coords = torch.stack([b, torch.zeros_like(b), rest // nx, rest % nx], dim=1)
    return torch.randn(count, channels, generator=gen), coords


def test_scatter_places_features_and_gradients_flow_back() -> None:
    gen = torch.Generator().manual_seed(0)
    batch_size, ny, nx, channels = 2, 7, 9, 5
    features, coords = random_pillars(gen, batch_size, ny, nx, 40, channels)
    features.requires_grad_(True)
    bev = scatter_to_bev(features, coords, batch_size, (ny, nx))

    expected = torch.zeros(batch_size, channels, ny, nx)
    for feature, (b, _, y, x) in zip(features.detach(), coords.tolist(), strict=True):
        expected[b, :, y, x] = feature
    torch.testing.assert_close(bev.detach(), expected)

    weight = torch.randn(bev.shape, generator=gen)
    (bev * weight).sum().backward()
    expected_grad = torch.stack([weight[b, :, y, x] for b, _, y, x in coords.tolist()])
    torch.testing.assert_close(features.grad, expected_grad)


def test_scatter_of_no_pillars_is_all_zero() -> None:
    bev = scatter_to_bev(torch.zeros(0, 3), torch.zeros(0, 4, dtype=torch.long), 2, (4, 5))
    assert bev.shape == (2, 3, 4, 5) and not bev.any()


@pytest.mark.parametrize(
    ("column", "value"), [(1, 1), (2, 6), (3, 8), (2, -1), (0, 2)], ids=["z", "y", "x", "neg", "b"]
)
def test_scatter_refuses_coords_off_the_grid(column: int, value: int) -> None:
    coords = torch.tensor([[0, 0, 1, 1], [1, 0, 2, 3]])
    coords[1, column] = value
    with pytest.raises(ValueError, match="coords"):
        scatter_to_bev(torch.ones(2, 3), coords, 2, (6, 8))


def test_scatter_refuses_two_pillars_in_one_cell() -> None:
    coords = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]])
    with pytest.raises(ValueError, match="unique"):
        scatter_to_bev(torch.ones(2, 3), coords, 1, (4, 4))


@pytest.mark.parametrize("grid_yx", [(16, 20), (15, 21), (17, 9)], ids=["even", "odd", "mixed"])
@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"layer_strides": (2, 2), "upsample_strides": (1, 2)},
        {
            "layer_nums": (1, 1, 1),
            "layer_strides": (1, 2, 2),
            "num_filters": (8, 16, 16),
            "upsample_strides": (1, 2, 4),
            "num_upsample_filters": (8, 8, 8),
        },
    ],
    ids=["default", "stride2", "three-stages"],
)
def test_backbone_shape_and_stride(grid_yx: tuple[int, int], settings: dict) -> None:
    gen = torch.Generator().manual_seed(1)
    backbone = BEVBackbone(6, **settings)
    out = backbone(torch.randn(2, 6, *grid_yx, generator=gen))
    first_stride = settings.get("layer_strides", (1, 2))[0]
    assert backbone.stride == first_stride
    assert backbone.out_channels == sum(settings.get("num_upsample_filters", (64, 64)))
    ny, nx = grid_yx
    assert out.shape == (
        2,
        backbone.out_channels,
        math.ceil(ny / first_stride),
        math.ceil(nx / first_stride),
    )
    # every stage contributes: no channel group is identically zero after its ReLU
    assert (out.flatten(2).abs().amax(-1) > 0).float().mean() > 0.5


def test_backbone_stages_are_aligned_at_the_top_left() -> None:
    """A single active input cell at the top-left corner only excites the output near that corner,
    in the first stage's channels and in the upsampled stage's channels alike."""
    backbone = BEVBackbone(1, layer_nums=(0, 0), num_filters=(4, 4), num_upsample_filters=(4, 4))
    backbone.eval()
    for module in backbone.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            torch.nn.init.constant_(module.weight, 0.1)
    bev = torch.zeros(1, 1, 11, 13)
    bev[0, 0, 0, 0] = 1.0
    delta = backbone(bev) - backbone(torch.zeros_like(bev))
    changed = delta.abs().amax(1)[0] > 1e-6
    rows, cols = changed.nonzero().T
    assert int(rows.max()) <= 3 and int(cols.max()) <= 3
    assert delta[0, 4:].abs().amax() > 0  # the upsampled stage saw the cell too


def test_backbone_refuses_inconsistent_strides() -> None:
    with pytest.raises(ValueError, match="one resolution"):
        BEVBackbone(4, layer_strides=(1, 2), upsample_strides=(1, 1))
    with pytest.raises(ValueError, match="equal length"):
        BEVBackbone(4, layer_nums=(1,))
