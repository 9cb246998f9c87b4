"""Depthwise submanifold sparse convolutions (ScatterFormer's cross-window interaction) on spconv.

spconv 2.3.8 has no grouped sparse convs (its ``SparseConvolution`` asserts ``groups == 1``), so
:class:`DepthwiseSubMConv3d` asks spconv for the submanifold rulebook (its own CPU neighbour search,
:func:`submanifold_rulebook`) and does the per-channel multiply-accumulate in torch (gather, scale,
``index_add``): O(pairs × C), no dense grid, ordinary autograd. The official code does the same on
the GPU with a CUDA kernel over spconv's implicit-GEMM pairs (GPU-only here).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from spconv.core import ConvAlgo
from spconv.pytorch import ops as spconv_ops
from torch import nn

from apps.pointcloud.frames import GridShape

Kernel = tuple[int, int, int]  # (kz, ky, kx), spconv's order


class Rulebook(NamedTuple):
    """Submanifold neighbour pairs: voxel ``outputs[j]`` reads voxel ``inputs[j]`` through kernel tap
    ``taps[j]`` (row-major over (kz, ky, kx)); all int64 ``[pairs]``."""

    inputs: torch.Tensor
    outputs: torch.Tensor
    taps: torch.Tensor


def submanifold_rulebook(
    coords: torch.Tensor, grid_shape: GridShape, batch_size: int, kernel: Kernel
) -> Rulebook:
    """spconv's rulebook of a stride-1 submanifold conv with ``kernel`` (centred) over coords ``[V, 4]``.

    spconv's native pairs are ``[2, taps, V]`` (input row, output row) with unused slots at -1; its
    count per tap covers only half the taps (the conv mirrors them), so the -1 mask is what we read.
    """
    with torch.no_grad():
        _, pairs, _ = spconv_ops.get_indice_pairs(
            coords.to(torch.int32).contiguous(),
            batch_size,
            list(grid_shape),
            ConvAlgo.Native,
            list(kernel),
            [1, 1, 1],
            [k // 2 for k in kernel],
            [1, 1, 1],
            [0, 0, 0],
            subm=True,
        )
        used = pairs[0] >= 0
        taps = used.nonzero()[:, 0]
        return Rulebook(pairs[0][used].long(), pairs[1][used].long(), taps)


class DepthwiseSubMConv3d(nn.Module):
    """Depthwise submanifold sparse conv ``[V, C] → [V, C]``, no bias (as the official one); weight
    ``[taps, C]`` in spconv's tap order, cross-correlation like ``F.conv3d``. See the module docstring
    for why it is built on spconv's rulebook rather than ``SubMConv3d(groups=C)``."""

    def __init__(self, channels: int, kernel: Kernel) -> None:
        super().__init__()
        self.kernel = kernel
        self.weight = nn.Parameter(torch.empty(math.prod(kernel), channels))
        bound = 1 / math.sqrt(math.prod(kernel))  # nn.Conv3d's default for a depthwise conv
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor, book: Rulebook) -> torch.Tensor:
        """x ``[V, C]`` and the rulebook of ``self.kernel`` over its voxels → ``[V, C]``."""
        contributions = x[book.inputs] * self.weight[book.taps]
        return x.new_zeros(x.shape).index_add(0, book.outputs, contributions)
