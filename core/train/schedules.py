"""Learning-rate schedules the papers use that torch does not ship, usable from YAML as
``model.scheduler.class_path`` with ``model.scheduler_interval: step``."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR


class WarmupInverseSqrt(LambdaLR):
    """The Transformer's schedule (Vaswani et al. 2017, §5.3; tensor2tensor's ``rsqrt_decay``): the
    learning rate rises linearly to the optimiser's lr over ``warmup_steps``, then decays as
    ``lr · sqrt(warmup_steps / step)``. Step it once per optimiser step."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 4000) -> None:
        if warmup_steps < 1:
            raise ValueError(f"warmup_steps must be ≥ 1, got {warmup_steps}")
        self.warmup_steps = warmup_steps
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        """The multiplier of the base lr after ``step`` optimiser steps (step 0: the first)."""
        step += 1
        return min(step / self.warmup_steps, (self.warmup_steps / step) ** 0.5)
