"""ScatterFormer, a voxel transformer with scattered linear attention (He et al., ECCV 2024).

The voxels of all windows (12 × 12 columns in y, x over the full height) form one packed sequence
sorted by window, with int32 ``cu_seqlens`` and no padding; each layer runs scattered linear attention
(SLA) within every window, then cross-window interaction (CWI): depthwise sparse convolutions over a
3×3×3 box and 13-long lines along x and y on three quarters of the channels, and an FFN. The paper
uses CWI instead of shifted windows, so the window grid never moves. A sparse-conv stem gives the
conditional position encoding; strided sparse convs separate the stages; attention-style pooling over
the remaining height turns the last stage's voxels into BEV pillars.

The depthwise sparse convolutions are :mod:`apps.pointcloud.depthwise`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import chain, pairwise
from typing import NamedTuple

import spconv.pytorch as spconv
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function

from apps.pointcloud.depthwise import DepthwiseSubMConv3d, Kernel, Rulebook, submanifold_rulebook
from apps.pointcloud.dsvt import AttentionPoolZ
from apps.pointcloud.frames import GridShape
from apps.pointcloud.sparse import sparse_tensor
from core.ops.scattered_linear_attention import DENOMINATOR_EPS, scattered_linear_attention


def batch_norm(channels: int) -> nn.BatchNorm1d:
    """BatchNorm over voxels with the official code's eps 1e-3 and momentum 0.01."""
    return nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01)


@dataclass(frozen=True)
class ScatterFormerConfig:
    """ScatterFormer's sizes. Defaults follow the paper and the official Waymo model
    (``backbones_3d/scatterformer.py``, ``cfgs/waymo_models/scatterformer.yaml``): width 128, 4 heads
    of 32, FFN 256 (2 × width), windows 12, CWI lines 13 long (window + 1), a stem of 3 residual
    blocks then a z-only stride-2 conv, two stages of 3 layers separated by a 3×3×3 stride-2 conv,
    and pillar pooling with 8 heads over a 32-voxel-high grid (6 m at 0.1875 m). The app's CPU configs
    use smaller sizes.

    stem_z_stride: stride of the stem's closing (3, 1, 1) conv along z (1: no such conv).
    stage_strides: (z, y, x) strides of the sparse convs between stages, one per gap between stages;
        the y and x strides must agree (``xy_stride`` is their product over the gaps).
    grid_height: the largest input nz; sizes the pillar pooling's z-slot embedding, as the official
        code sizes it from its grid.
    """

    d_model: int = 128
    n_heads: int = 4
    d_ffn: int = 256
    window: int = 12
    cwi_kernel: int = 13
    stem_blocks: int = 3
    stem_z_stride: int = 2
    stage_layers: tuple[int, ...] = (3, 3)
    stage_strides: tuple[tuple[int, int, int], ...] = ((2, 2, 2),)
    pool_heads: int = 8
    grid_height: int = 32

    def __post_init__(self) -> None:
        c = self
        positive = min(c.window, c.stem_z_stride, c.grid_height, *c.stage_layers, c.cwi_kernel) >= 1
        if not positive or c.d_model < 4 or c.d_model % c.n_heads or c.d_model % c.pool_heads:
            raise ValueError(f"sizes must be ≥ 1, d_model ≥ 4 divisible by both head counts: {c}")
        if c.cwi_kernel % 2 == 0:
            raise ValueError(f"cwi_kernel must be odd, got {c.cwi_kernel}")
        if len(c.stage_strides) != len(c.stage_layers) - 1 or any(
            y != x or min(z, y) < 1 for z, y, x in c.stage_strides
        ):
            raise ValueError(
                f"stage_strides {c.stage_strides} needs one (z, y, x) stride ≥ 1 with y = x per gap "
                f"between the {len(c.stage_layers)} stages"
            )

    @property
    def xy_stride(self) -> int:
        """Input cells one output cell spans in x and in y."""
        return math.prod(y for _, y, _ in self.stage_strides)

    @property
    def pooled_height(self) -> int:
        """Height left for the pillar pooling from a ``grid_height``-high input (ceil per stride)."""
        height = -(-self.grid_height // self.stem_z_stride)
        for z, _, _ in self.stage_strides:
            height = -(-height // z)
        return height


def partition_windows(
    coords: torch.Tensor, grid_shape: GridShape, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group voxels ``[V, 4]`` (b, z, y, x) into window columns (``window`` × ``window`` cells in y, x,
    full height): the order ``[V]`` that sorts them by window (stable) and int32 ``cu_seqlens``
    ``[N+1]`` over the N occupied windows. Pure torch (no ``.item()``)."""
    with torch.no_grad(), record_function("pointcloud/partition"):
        _, ny, nx = grid_shape
        windows_y, windows_x = -(-ny // window), -(-nx // window)
        b, _, y, x = coords.long().unbind(1)
        window_id = (b * windows_y + y // window) * windows_x + x // window
        sorted_ids, order = torch.sort(window_id, stable=True)
        counts = torch.unique_consecutive(sorted_ids, return_counts=True)[1]
        cu_seqlens = F.pad(counts.cumsum(0), (1, 0)).to(torch.int32)
    return order, cu_seqlens


@dataclass
class Layout:
    """One stage's voxels in window order: coords ``[V, 4]``, int32 ``cu_seqlens``, the grid and
    batch size, and the rulebooks its depthwise convs share (built on first use)."""

    coords: torch.Tensor
    cu_seqlens: torch.Tensor
    grid_shape: GridShape
    batch_size: int
    rulebooks: dict[Kernel, Rulebook] = field(default_factory=dict)

    def rulebook(self, kernel: Kernel) -> Rulebook:
        if kernel not in self.rulebooks:
            self.rulebooks[kernel] = submanifold_rulebook(
                self.coords, self.grid_shape, self.batch_size, kernel
            )
        return self.rulebooks[kernel]


class SLALayer(nn.Module):
    """Pre-norm scattered linear attention with residual: BatchNorm, q, k, v without bias, SLA within
    each window (φ = ReLU inside the op), output projection.

    forward: x ``[V, d]`` in window order, int32 ``cu_seqlens`` ``[N+1]`` → ``[V, d]``.
    """

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm = batch_norm(d_model)
        self.q, self.k, self.v = (nn.Linear(d_model, d_model, bias=False) for _ in range(3))
        self.proj = nn.Linear(d_model, d_model)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v ``[V, H, d/H]`` of the normalised input."""
        h = self.norm(x)
        q, k, v = (
            linear(h).unflatten(1, (self.n_heads, -1)) for linear in (self.q, self.k, self.v)
        )
        return q, k, v

    def attend(self, x: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
        """The attention output ``[V, d]`` (heads concatenated) before the output projection."""
        return scattered_linear_attention(*self.project(x), cu_seqlens).flatten(1)

    def forward(self, x: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
        return x + self.proj(self.attend(x, cu_seqlens))


class CrossWindowInteraction(nn.Module):
    """CWI then FFN, each pre-norm with residual. The normalised channels split into four groups: a
    depthwise 3×3×3 box, a (1, 1, L) line along x, a (1, L, 1) line along y, and identity.

    The official code adds the mixed groups to the normalised input rather than to the input; here
    both residuals are plain pre-norm ones.

    forward: x ``[V, d]``, the stage's :class:`Layout` → ``[V, d]``.
    """

    def __init__(self, d_model: int, d_ffn: int, length: int) -> None:
        super().__init__()
        group = d_model // 4
        self.split = (group, group, group, d_model - 3 * group)
        self.norm = batch_norm(d_model)
        kernels = ((3, 3, 3), (1, 1, length), (1, length, 1))
        self.convs = nn.ModuleList(DepthwiseSubMConv3d(group, kernel) for kernel in kernels)
        self.ffn_norm = batch_norm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ffn), nn.ReLU(), nn.Linear(d_ffn, d_model))

    def forward(self, x: torch.Tensor, layout: Layout) -> torch.Tensor:
        *groups, identity = self.norm(x).split(self.split, dim=1)
        mixed = [
            conv(group, layout.rulebook(conv.kernel))
            for conv, group in zip(self.convs, groups, strict=True)
        ]
        x = x + torch.cat([*mixed, identity], dim=1)
        return x + self.ffn(self.ffn_norm(x))


class ScatterFormerBlock(nn.Module):
    """One layer: :class:`SLALayer` then :class:`CrossWindowInteraction`; ``[V, d] → [V, d]``."""

    def __init__(self, config: ScatterFormerConfig) -> None:
        super().__init__()
        self.attention = SLALayer(config.d_model, config.n_heads)
        self.cwi = CrossWindowInteraction(config.d_model, config.d_ffn, config.cwi_kernel)

    def forward(self, x: torch.Tensor, layout: Layout) -> torch.Tensor:
        return self.cwi(self.attention(x, layout.cu_seqlens), layout)


class SparseResidualBlock(spconv.SparseModule):
    """OpenPCDet's ``SparseBasicBlock``: two submanifold 3×3×3 convs with BatchNorm, ReLU after the
    first and after the residual sum."""

    def __init__(self, channels: int, indice_key: str) -> None:
        super().__init__()
        self.conv1, self.conv2 = (
            spconv.SubMConv3d(channels, channels, 3, padding=1, bias=False, indice_key=indice_key)
            for _ in range(2)
        )
        self.bn1, self.bn2 = batch_norm(channels), batch_norm(channels)

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        out = self.conv1(x)
        out = self.conv2(out.replace_feature(F.relu(self.bn1(out.features))))
        return out.replace_feature(F.relu(self.bn2(out.features) + x.features))


def position_encoding(in_channels: int, config: ScatterFormerConfig) -> spconv.SparseSequential:
    """The conditional position encoding: submanifold 3×3×3 conv + BN + ReLU, residual blocks, and
    (stride > 1) a (3, 1, 1) conv striding z, as the official stem."""
    d = config.d_model
    layers: list[nn.Module] = [
        spconv.SubMConv3d(in_channels, d, 3, padding=1, bias=False, indice_key="stem"),
        batch_norm(d),
        nn.ReLU(),
        *(SparseResidualBlock(d, "stem") for _ in range(config.stem_blocks)),
    ]
    if config.stem_z_stride > 1:
        stride = (config.stem_z_stride, 1, 1)
        down = spconv.SparseConv3d(d, d, (3, 1, 1), stride, padding=(1, 0, 0), bias=False)
        layers += [down, batch_norm(d), nn.ReLU()]
    return spconv.SparseSequential(*layers)


class LayerQueriesKeys(NamedTuple):
    """One SLA layer's q, k ``[V, H, D]`` with its windows: int32 ``cu_seqlens``, coords ``[V, 4]``
    in that (window) order, and the stage's grid (nz, ny, nx)."""

    q: torch.Tensor
    k: torch.Tensor
    cu_seqlens: torch.Tensor
    coords: torch.Tensor
    grid_shape: GridShape


class ScatterFormer(nn.Module):
    """The ScatterFormer backbone over sparse voxels.

    forward: features ``[V, in_channels]``, coords int ``[V, 4]`` (b, z, y, x), grid (nz, ny, nx) with
    nz ≤ ``config.grid_height`` → pillar features ``[P, d_model]``, coords ``[P, 4]`` with z = 0, grid
    (1, ny', nx') where ny' = ⌈ny / xy_stride⌉ (likewise nx').
    """

    def __init__(self, in_channels: int, config: ScatterFormerConfig) -> None:
        super().__init__()
        self.config, self.in_channels = config, in_channels
        self.out_channels, self.xy_stride = config.d_model, config.xy_stride
        d = config.d_model
        self.stem = position_encoding(in_channels, config)
        self.stages = nn.ModuleList(
            nn.ModuleList(ScatterFormerBlock(config) for _ in range(layers))
            for layers in config.stage_layers
        )
        self.stage_norms = nn.ModuleList(batch_norm(d) for _ in config.stage_layers)
        self.downsamples = nn.ModuleList(
            spconv.SparseConv3d(d, d, 3, stride, padding=1, bias=False)
            for stride in config.stage_strides
        )
        self.pool = AttentionPoolZ(d, config.pool_heads, config.pooled_height)

    def forward(
        self, features: torch.Tensor, coords: torch.Tensor, grid_shape: GridShape
    ) -> tuple[torch.Tensor, torch.Tensor, GridShape]:
        self._check_inputs(features, coords, grid_shape)
        batch_size = int(coords[:, 0].max()) + 1  # spconv's hashing needs it on the host
        tensor = self.stem(sparse_tensor(features, coords, grid_shape, batch_size))
        for index, blocks in enumerate(self.stages):
            grid, batch = tuple(tensor.spatial_shape), tensor.batch_size
            order, cu_seqlens = partition_windows(tensor.indices, grid, self.config.window)
            layout = Layout(tensor.indices[order], cu_seqlens, grid, batch)
            x = tensor.features[order]
            for block in blocks:
                x = block(x, layout)
            tensor = sparse_tensor(self.stage_norms[index](x), layout.coords, grid, batch)
            if index < len(self.downsamples):
                tensor = self.downsamples[index](tensor)
        return self.pool(tensor.features, tensor.indices.long(), tuple(tensor.spatial_shape))

    @torch.no_grad()
    def layer_queries_keys(
        self, features: torch.Tensor, coords: torch.Tensor, grid_shape: GridShape, layer: int
    ) -> LayerQueriesKeys:
        """q and k of SLA layer ``layer`` (counted over all stages) for this batch, recomputed by a
        forward pass (call in eval mode: in training mode BatchNorm statistics would move)."""
        blocks = list(chain.from_iterable(self.stages))
        if not 0 <= layer < len(blocks):
            raise ValueError(f"layer {layer} out of range: the backbone has {len(blocks)} layers")
        seen: list[tuple[torch.Tensor, Layout]] = []
        hook = blocks[layer].register_forward_pre_hook(lambda _, args: seen.append(args))
        try:
            self(features, coords, grid_shape)
        finally:
            hook.remove()
        x, layout = seen[0]
        q, k, _ = blocks[layer].attention.project(x)
        return LayerQueriesKeys(q, k, layout.cu_seqlens, layout.coords.long(), layout.grid_shape)

    def _check_inputs(
        self, features: torch.Tensor, coords: torch.Tensor, grid_shape: GridShape
    ) -> None:
        v = len(features)
        if features.shape != (v, self.in_channels) or coords.shape != (v, 4) or v == 0:
            raise ValueError(
                f"features {tuple(features.shape)} and coords {tuple(coords.shape)} must be "
                f"[V ≥ 1, {self.in_channels}] and [V, 4] (b, z, y, x)"
            )
        if grid_shape[0] > self.config.grid_height:
            raise ValueError(f"grid {tuple(grid_shape)} is higher than config.grid_height")
        upper = torch.tensor(grid_shape, device=coords.device)
        bad = (coords < 0).any(1) | (coords[:, 1:] >= upper).any(1)
        if bad.any():
            row = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"voxel {row} has coordinate (b, z, y, x) = {tuple(coords[row].tolist())} outside "
                f"the grid (nz, ny, nx) = {tuple(grid_shape)}"
            )


def implied_weights(
    q: torch.Tensor, k: torch.Tensor, cu_seqlens: torch.Tensor
) -> list[torch.Tensor]:
    """The attention weights SLA implies, per window ``[H, L, L]``: ``φ(q)·φ(k)ᵀ`` normalised per row
    with the op's ε (row sums are 1 unless a query meets only zero keys). For figures: loops over
    windows. q, k ``[V, H, D]`` in window order, int32 ``cu_seqlens`` ``[N+1]``."""
    weights = []
    bounds = cu_seqlens.tolist()
    for start, end in pairwise(bounds):
        scores = torch.einsum("lhd,mhd->hlm", F.relu(q[start:end]), F.relu(k[start:end]))
        weights.append(scores / (scores.sum(-1, keepdim=True) + DENOMINATOR_EPS))
    return weights
