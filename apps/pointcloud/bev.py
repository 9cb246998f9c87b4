"""Bird's-eye-view stage: pillar features scattered onto a dense map, then a SECOND-style 2-D backbone.

The backbone (Yan et al., SECOND, 2018; Lang et al., PointPillars, 2019) runs a few strided stages
of 3×3 convolutions, brings every stage back to the first stage's resolution (transposed convolution,
or a 1×1 convolution when no upsampling is needed) and concatenates them, so the head sees both fine
and coarse context at one resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from core.ops import value_checks_enabled


def _check_bev_coords(coords: torch.Tensor, batch_size: int, grid_yx: tuple[int, int]) -> None:
    """ValueError unless coords [V, 4] (b, z, y, x) are unique pillars (z = 0) inside the grid. The
    checks of values run where core's ops run theirs (CPU tensors, or the debug switch): on a GPU
    each would wait for the device."""
    if coords.ndim != 2 or coords.shape[1] != 4:
        raise ValueError(f"coords must be [V, 4] (b, z, y, x), got {tuple(coords.shape)}")
    if coords.numel() == 0 or not value_checks_enabled(coords):
        return
    b, z, y, x = coords.unbind(1)
    if bool((z != 0).any()):
        raise ValueError("coords z must be 0: scatter_to_bev expects pillars")
    ny, nx = grid_yx
    for name, index, size in (("b", b, batch_size), ("y", y, ny), ("x", x, nx)):
        if bool((index < 0).any() or (index >= size).any()):
            raise ValueError(f"coords {name} outside [0, {size})")
    cells = (b * ny + y) * nx + x
    if torch.unique(cells).shape[0] != cells.shape[0]:
        raise ValueError("coords must be unique: two pillars share a cell")


def scatter_to_bev(
    features: torch.Tensor, coords: torch.Tensor, batch_size: int, grid_yx: tuple[int, int]
) -> torch.Tensor:
    """Dense BEV map [B, C, ny, nx] from pillar features [V, C] at coords [V, 4] (b, 0, y, x).

    Cells without a pillar are zero; gradients flow back to ``features``.
    """
    if features.ndim != 2 or features.shape[0] != coords.shape[0]:
        raise ValueError(
            f"features must be [V, C] with V = {coords.shape[0]}, got {tuple(features.shape)}"
        )
    _check_bev_coords(coords, batch_size, grid_yx)
    ny, nx = grid_yx
    channels = features.shape[1]
    flat = (coords[:, 0] * ny + coords[:, 2]) * nx + coords[:, 3]
    canvas = features.new_zeros(batch_size * ny * nx, channels).index_put((flat,), features)
    return canvas.view(batch_size, ny, nx, channels).permute(0, 3, 1, 2).contiguous()


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    """3×3 convolution (padding 1), batch norm, ReLU."""
    return [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.01),
        nn.ReLU(inplace=True),
    ]


def _stage(in_channels: int, out_channels: int, stride: int, num_layers: int) -> nn.Sequential:
    """One strided Conv3×3-BN-ReLU followed by ``num_layers`` Conv3×3-BN-ReLU."""
    layers = _conv_bn_relu(in_channels, out_channels, stride)
    for _ in range(num_layers):
        layers += _conv_bn_relu(out_channels, out_channels)
    return nn.Sequential(*layers)


def _upsample(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Transposed convolution by ``stride`` (1×1 convolution when stride is 1), BN, ReLU."""
    if stride > 1:
        conv: nn.Module = nn.ConvTranspose2d(
            in_channels, out_channels, stride, stride=stride, bias=False
        )
    else:
        conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
    return nn.Sequential(
        conv, nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.01), nn.ReLU(inplace=True)
    )


def _output_stride(layer_strides: Sequence[int], upsample_strides: Sequence[int]) -> int:
    """The common stride of all upsampled stages; ValueError when they disagree."""
    if any(s < 1 for s in (*layer_strides, *upsample_strides)):
        raise ValueError("layer and upsample strides must be integers >= 1")
    cumulative = torch.tensor(layer_strides).cumprod(0).tolist()
    if cumulative[0] % upsample_strides[0] != 0:
        raise ValueError("upsample_strides[0] must divide layer_strides[0]")
    stride = cumulative[0] // upsample_strides[0]
    if any(c != stride * u for c, u in zip(cumulative, upsample_strides, strict=True)):
        raise ValueError(
            f"stages reach strides {cumulative}; upsample_strides {tuple(upsample_strides)} "
            "must bring them all to one resolution"
        )
    return stride


class BEVBackbone(nn.Module):
    """SECOND/PointPillars 2-D backbone: [B, in_channels, ny, nx] → [B, out_channels, H, W].

    H = ceil(ny / stride), W = ceil(nx / stride) with ``stride`` = layer_strides[0] /
    upsample_strides[0]; ``out_channels`` = sum(num_upsample_filters).
    """

    def __init__(
        self,
        in_channels: int,
        layer_nums: Sequence[int] = (1, 2),
        layer_strides: Sequence[int] = (1, 2),
        num_filters: Sequence[int] = (64, 128),
        upsample_strides: Sequence[int] = (1, 2),
        num_upsample_filters: Sequence[int] = (64, 64),
    ) -> None:
        super().__init__()
        lengths = {len(layer_nums), len(layer_strides), len(num_filters)}
        lengths |= {len(upsample_strides), len(num_upsample_filters)}
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError("backbone stage settings must be non-empty and of equal length")
        self.stride = _output_stride(layer_strides, upsample_strides)
        self.out_channels = sum(num_upsample_filters)
        stage_inputs = (in_channels, *num_filters[:-1])
        self.stages = nn.ModuleList(
            _stage(c_in, c_out, s, n)
            for c_in, c_out, s, n in zip(
                stage_inputs, num_filters, layer_strides, layer_nums, strict=True
            )
        )
        self.upsamples = nn.ModuleList(
            _upsample(c_in, c_out, s)
            for c_in, c_out, s in zip(
                num_filters, num_upsample_filters, upsample_strides, strict=True
            )
        )

    def forward(self, bev: torch.Tensor) -> torch.Tensor:
        """bev [B, C, ny, nx] → [B, out_channels, H, W]."""
        upsampled = []
        x = bev
        for stage, upsample in zip(self.stages, self.upsamples, strict=True):
            x = stage(x)
            upsampled.append(upsample(x))
        height, width = (-(-n // self.stride) for n in bev.shape[-2:])
        # odd sizes: strided convolutions round up, so maps can overshoot by a cell; crop (or pad)
        aligned = [F.pad(m, (0, width - m.shape[-1], 0, height - m.shape[-2])) for m in upsampled]
        return torch.cat(aligned, dim=1)
