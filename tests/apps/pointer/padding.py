"""Padding for decoding tests, written apart from the datamodule's collate."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from apps.pointer.constraints import EOS
from apps.pointer.data import IGNORE_INDEX


def pad_points(point_sets: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Point sets [n_b, 2] → points [B, N, 2] (zeros past each set) and point_mask [B, N]."""
    size = max(len(p) for p in point_sets)
    points = torch.zeros(len(point_sets), size, 2)
    point_mask = torch.zeros(len(point_sets), size, dtype=torch.bool)
    for row, p in enumerate(point_sets):
        points[row, : len(p)] = torch.as_tensor(p, dtype=torch.float32)
        point_mask[row, : len(p)] = True
    return points, point_mask


def pad_outputs(outputs: Sequence[np.ndarray]) -> torch.Tensor:
    """1-based outputs → targets [B, T]: each output, then EOS, then ``IGNORE_INDEX``."""
    targets = torch.full((len(outputs), max(len(o) for o in outputs) + 1), IGNORE_INDEX)
    for row, output in enumerate(outputs):
        targets[row, : len(output)] = torch.as_tensor(output)
        targets[row, len(output)] = EOS
    return targets
