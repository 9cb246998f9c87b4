"""DSVT, the Dynamic Sparse Voxel Transformer with rotated sets (Wang et al., CVPR 2023).

Each block runs two set-attention layers over the same windows: the first on sets cut along y, the
second on sets cut along x (:mod:`apps.pointcloud.sets`); odd blocks use the shifted windows. Layers are
post-norm, as in the official code: ``SetAttention`` (attention and FFN, each with residual +
LayerNorm) sits inside one more residual + LayerNorm, and every block inside another. The pillar
variant (DSVT-P) runs one stage on a BEV grid; the voxel variant (DSVT-V) runs a stage per z
resolution, pooling along z between stages with :class:`AttentionPoolZ` until the grid is BEV.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.profiler import record_function
from torch.utils.checkpoint import checkpoint

from apps.pointcloud.frames import GridShape
from apps.pointcloud.sets import SetPartition, partition_sets
from core.nn import Dropout
from core.nn.attention import MultiHeadAttention

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


@dataclass(frozen=True)
class DSVTConfig:
    """DSVT's sizes. The defaults are the paper's pillar variant (DSVT-P on Waymo, official config
    ``dsvt_plain_1f_onestage``): width 192, 8 heads, FFN 384, 4 blocks, windows 12×12×1, sets of 36
    voxels, GELU, no dropout. The voxel variant (DSVT-V) pools z by ``z_pool_strides=(4, 4, 2)`` on a
    grid 32 voxels high, with 1 block per stage, sets of 48 and windows as high as the stage's grid
    (``window_shape=(12, 12, 32)``: the window's z is capped at each stage's height). The app's CPU
    configs use smaller sizes. The official shifted windows are also twice as wide (its
    ``hybrid_factor``); here both configurations share ``window_shape``.

    z_pool_strides: empty for the pillar variant (input already pillars, nz = 1); otherwise one stage
        per entry plus a final BEV stage, separated by attention pooling along z with that stride.
    checkpointing: recompute each block's activations in the backward (torch.utils.checkpoint).
    """

    d_model: int = 192
    n_heads: int = 8
    d_ffn: int = 384
    blocks: int = 4
    window_shape: tuple[int, int, int] = (12, 12, 1)
    set_size: int = 36
    dropout: float = 0.0
    activation: Literal["gelu", "relu"] = "gelu"
    z_pool_strides: tuple[int, ...] = ()
    checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.blocks < 1 or self.set_size < 1 or min(self.window_shape) < 1:
            raise ValueError(
                f"blocks ({self.blocks}), set_size ({self.set_size}) and window_shape "
                f"{self.window_shape} must be positive"
            )
        if any(stride < 2 for stride in self.z_pool_strides):
            raise ValueError(f"z_pool_strides {self.z_pool_strides} must each be ≥ 2")

    def window_on(self, grid_shape: GridShape) -> tuple[int, int, int]:
        """``window_shape`` (x, y, z) with z capped at the height nz of grid (nz, ny, nx)."""
        wx, wy, wz = self.window_shape
        return wx, wy, min(wz, grid_shape[0])


class PositionEmbedding(nn.Module):
    """Learned embedding ``[V, d]`` of in-window coordinates centred on the window ``[V, 2 or 3]``
    (DSVT's ``PositionEmbeddingLearned``: Linear, BatchNorm, ReLU, Linear)."""

    def __init__(self, in_dims: int, d_model: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dims, d_model),
            nn.BatchNorm1d(d_model),
            nn.ReLU(),
            nn.Linear(d_model, d_model),
        )

    def forward(self, centred: torch.Tensor) -> torch.Tensor:
        return self.net(centred)


class SetAttention(nn.Module):
    """One DSVT layer: attention within each set of a :class:`SetPartition`, then an FFN, each with a
    post-norm residual. Positions go into queries and keys only; a voxel present in two sets keeps the
    output of its first (``part.owner``).

    forward: x ``[V, d]``, pos ``[V, d]`` → ``[V, d]``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ffn: int,
        dropout: float = 0.0,
        activation: Literal["gelu", "relu"] = "gelu",
    ) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, d_ffn),
            ACTIVATIONS[activation](),
            Dropout(dropout),
            nn.Linear(d_ffn, d_model),
        )
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, part: SetPartition) -> torch.Tensor:
        x_tok = x[part.tokens]
        attended = self.attn(x_tok + pos[part.tokens], value=x_tok, cu_seqlens=part.cu_seqlens)
        h = self.norm1(x + self.dropout(attended[part.owner]))
        return self.norm2(h + self.dropout(self.ffn(h)))


class DSVTBlock(nn.Module):
    """Two :class:`SetAttention` layers on one window configuration, the first on the y-axis sets and
    the second on the x-axis sets, each with its own position embedding.

    forward: x ``[V, d]``, centred in-window coordinates ``[V, pos_dims]``, the (y, x) partitions →
    ``[V, d]``.
    """

    def __init__(self, config: DSVTConfig, pos_dims: int) -> None:
        super().__init__()
        c = config
        self.layers = nn.ModuleList(
            SetAttention(c.d_model, c.n_heads, c.d_ffn, c.dropout, c.activation) for _ in range(2)
        )
        self.layer_norms = nn.ModuleList(nn.LayerNorm(c.d_model) for _ in range(2))
        self.positions = nn.ModuleList(PositionEmbedding(pos_dims, c.d_model) for _ in range(2))
        self.norm = nn.LayerNorm(c.d_model)
        self.checkpointing = c.checkpointing

    def forward(
        self, x: torch.Tensor, centred: torch.Tensor, parts: Sequence[SetPartition]
    ) -> torch.Tensor:
        # positions outside the checkpoint: recomputing BatchNorm would update its statistics twice
        positions = [embed(centred) for embed in self.positions]
        if self.checkpointing and torch.is_grad_enabled():
            return checkpoint(self.attend, x, positions, parts, use_reentrant=False)
        return self.attend(x, positions, parts)

    def attend(
        self, x: torch.Tensor, positions: Sequence[torch.Tensor], parts: Sequence[SetPartition]
    ) -> torch.Tensor:
        """The two layers given their position embeddings ``[V, d]``."""
        out = x
        for layer, norm, pos, part in zip(
            self.layers, self.layer_norms, positions, parts, strict=True
        ):
            out = norm(layer(out, pos, part) + out)
        return self.norm(out + x)


class AttentionPoolZ(nn.Module):
    """DSVT-V's attention-style pooling along z: the voxels with the same (b, y, x) and z // stride
    become one. Query: their max-pool; keys: the voxels plus a learned embedding of their slot
    (z % stride); values: the voxels; then a residual on the query and LayerNorm.

    Empty slots are masked out of the attention and the max-pool; the official code fills them with
    zeros and attends to them.

    forward: x ``[V, d]``, coords ``[V, 4]`` (b, z, y, x), grid (nz, ny, nx) → ``[P, d]``, coords
    ``[P, 4]`` with z // stride, grid (⌈nz/stride⌉, ny, nx).
    """

    def __init__(self, d_model: int, n_heads: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.slot_embedding = nn.Parameter(torch.randn(stride, d_model) * 0.01)
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self, x: torch.Tensor, coords: torch.Tensor, grid_shape: GridShape
    ) -> tuple[torch.Tensor, torch.Tensor, GridShape]:
        nz, ny, nx = grid_shape
        nz_out = -(-nz // self.stride)
        b, z, y, x_index = coords.long().unbind(1)
        cell = ((b * nz_out + z // self.stride) * ny + y) * nx + x_index
        cells, pooled = torch.unique(cell, return_inverse=True)
        slot = z % self.stride
        groups = (len(cells), self.stride)
        members = x.new_zeros(*groups, x.shape[1]).index_put((pooled, slot), x)  # [P, stride, d]
        present = torch.zeros(groups, dtype=torch.bool, device=x.device)
        present[pooled, slot] = True
        query = members.masked_fill(~present[..., None], float("-inf")).amax(1)  # [P, d]
        out = self.attn(
            query[:, None],
            members + self.slot_embedding,
            value=members,
            mask=present[:, None, None, :],
        )
        return (
            self.norm(out[:, 0] + query),
            _decode_cells(cells, (nz_out, ny, nx)),
            (nz_out, ny, nx),
        )


def _decode_cells(cells: torch.Tensor, grid_shape: GridShape) -> torch.Tensor:
    """Row-major cell numbers ``[P]`` over (b, z, y, x) back to coordinates ``[P, 4]``."""
    nz, ny, nx = grid_shape
    x, rest = cells % nx, cells // nx
    y, rest = rest % ny, rest // ny
    return torch.stack((rest // nz, rest % nz, y, x), 1)


class _StageSets:
    """A stage's set partitions, made on first use and shared by every block using them."""

    def __init__(
        self, coords: torch.Tensor, grid_shape: GridShape, config: DSVTConfig, pos_dims: int
    ) -> None:
        self.window_shape = config.window_on(grid_shape)
        self.coords, self.grid_shape, self.set_size = coords, grid_shape, config.set_size
        self.pos_dims = pos_dims
        self.cache: dict[bool, tuple[torch.Tensor, tuple[SetPartition, SetPartition]]] = {}

    def __call__(self, shifted: bool) -> tuple[torch.Tensor, tuple[SetPartition, SetPartition]]:
        """Centred in-window coordinates ``[V, pos_dims]`` and the (y-axis, x-axis) partitions."""
        if shifted not in self.cache:
            with torch.no_grad(), record_function("pointcloud/partition"):
                y_sets, x_sets = (
                    partition_sets(
                        self.coords,
                        self.grid_shape,
                        self.window_shape,
                        self.set_size,
                        shifted,
                        axis,
                    )
                    for axis in ("y", "x")
                )
            half = torch.tensor(self.window_shape, device=self.coords.device) / 2
            centred = (y_sets.in_window.float() - half)[:, : self.pos_dims]
            self.cache[shifted] = (centred, (y_sets, x_sets))
        return self.cache[shifted]


class DSVT(nn.Module):
    """The DSVT backbone over sparse voxels.

    forward: features ``[V, in_channels]``, coords int ``[V, 4]`` (b, z, y, x), grid (nz, ny, nx) →
    features ``[V', d_model]``, coords ``[V', 4]`` with z = 0, grid (1, ny, nx). The grid must reach
    nz = 1 after the z pooling (pillar variant: nz = 1 already).
    """

    def __init__(self, in_channels: int, config: DSVTConfig) -> None:
        super().__init__()
        self.config = config
        self.out_channels = config.d_model
        self.xy_stride = 1  # pooling only along z: the output keeps the input's x, y cells
        self.input_proj: nn.Module = (
            nn.Linear(in_channels, config.d_model)
            if in_channels != config.d_model
            else nn.Identity()
        )
        self.in_channels = in_channels
        last = len(config.z_pool_strides)
        self.stages = nn.ModuleList(
            nn.ModuleList(
                DSVTBlock(config, pos_dims=2 if stage == last else 3) for _ in range(config.blocks)
            )
            for stage in range(last + 1)
        )
        self.pools = nn.ModuleList(
            AttentionPoolZ(config.d_model, config.n_heads, stride)
            for stride in config.z_pool_strides
        )
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Xavier-uniform for every weight matrix, as the official backbone does."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(
        self, features: torch.Tensor, coords: torch.Tensor, grid_shape: GridShape
    ) -> tuple[torch.Tensor, torch.Tensor, GridShape]:
        self._check_inputs(features, coords, grid_shape)
        x = self.input_proj(features)
        block_index = 0
        last = len(self.stages) - 1
        for stage, blocks in enumerate(self.stages):
            if stage > 0:
                x, coords, grid_shape = self.pools[stage - 1](x, coords, grid_shape)
            sets = _StageSets(coords, grid_shape, self.config, pos_dims=2 if stage == last else 3)
            for block in blocks:
                centred, parts = sets(shifted=block_index % 2 == 1)
                x = block(x, centred, parts)
                block_index += 1
        return x, coords, grid_shape

    def _check_inputs(
        self, features: torch.Tensor, coords: torch.Tensor, grid_shape: GridShape
    ) -> None:
        if features.dim() != 2 or features.shape[1] != self.in_channels:
            raise ValueError(
                f"features must be [V, {self.in_channels}], got {tuple(features.shape)}"
            )
        if coords.shape != (features.shape[0], 4):
            raise ValueError(
                f"coords must be [{features.shape[0]}, 4] (b, z, y, x), got {tuple(coords.shape)}"
            )
        nz = grid_shape[0]
        for stride in self.config.z_pool_strides:
            nz = -(-nz // stride)
        if nz != 1:
            raise ValueError(
                f"grid height {grid_shape[0]} pooled by z_pool_strides "
                f"{self.config.z_pool_strides} leaves nz = {nz}; DSVT's output must be BEV (nz = 1)"
            )
