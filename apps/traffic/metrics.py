"""Masked forecast metrics — MAE, RMSE, MAPE per horizon step and averaged — as the traffic literature
reports them (DCRNN, STGCN, STTN): at 15, 30 and 60 minutes ahead (horizons 3, 6, 12 at 5-minute
steps) and over the whole horizon.

Masking is explicit: only observed targets count (the batch's ``y_mask``, built from the data's
missing-value rule), for MAE, RMSE and MAPE alike. A horizon with no observed target reports NaN, so
an all-missing target can never look like a perfect forecast. MAPE also leaves out targets equal to
0 (no percentage error exists there) and is in percent.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric


def masked_errors(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-horizon sums over observed entries of ``[B, T, N]`` tensors: ``abs``, ``sq``, ``count``,
    and ``ape`` / ``ape_count`` (absolute percentage error where the target is non-zero) → ``[T]``."""
    mask = mask & torch.isfinite(target)
    error = torch.where(mask, prediction - target, torch.zeros_like(target))
    nonzero = mask & (target != 0)
    ape = torch.where(
        nonzero, error.abs() / target.abs().clamp_min(1e-12), torch.zeros_like(target)
    )
    dims = (0, 2)
    return {
        "abs": error.abs().sum(dims),
        "sq": error.square().sum(dims),
        "count": mask.sum(dims).to(prediction.dtype),
        "ape": ape.sum(dims),
        "ape_count": nonzero.sum(dims).to(prediction.dtype),
    }


def masked_mae(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the observed entries (the training loss); 0 when none is observed."""
    sums = masked_errors(prediction, target, mask)
    return sums["abs"].sum() / sums["count"].sum().clamp_min(1)


class ForecastMetrics(Metric):
    """``MAE@15min``, ``RMSE@15min``, ``MAPE@15min`` … at each reported horizon step, and ``MAE``,
    ``RMSE``, ``MAPE`` pooled over every horizon step. States are sums (exact under DDP).

    Args:
        horizon: steps forecast, T.
        report_steps: 1-based horizon steps reported on their own (3, 6, 12 = 15, 30, 60 min).
        interval_minutes: minutes between steps, for the names.
    """

    full_state_update = False

    def __init__(
        self, horizon: int, report_steps: Sequence[int] = (3, 6, 12), interval_minutes: int = 5
    ) -> None:
        super().__init__()
        self.report_steps = [s for s in report_steps if s <= horizon]
        self.interval_minutes = interval_minutes
        for name in ("abs", "sq", "count", "ape", "ape_count"):
            self.add_state(name, torch.zeros(horizon, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        """``prediction``, ``target`` ``[B, T, N]`` in the data's units; ``mask`` True = observed."""
        for name, value in masked_errors(prediction.double(), target.double(), mask).items():
            getattr(self, name).add_(value)

    def compute(self) -> dict[str, torch.Tensor]:
        def scores(index: slice | int) -> dict[str, torch.Tensor]:
            count, ape_count = self.count[index].sum(), self.ape_count[index].sum()
            nan = torch.tensor(float("nan"), dtype=torch.float64, device=count.device)
            return {
                "MAE": self.abs[index].sum() / count if count > 0 else nan,
                "RMSE": (self.sq[index].sum() / count).sqrt() if count > 0 else nan,
                "MAPE": 100 * self.ape[index].sum() / ape_count if ape_count > 0 else nan,
            }

        out = {}
        for step in self.report_steps:
            minutes = step * self.interval_minutes
            out |= {f"{name}@{minutes}min": v for name, v in scores(step - 1).items()}
        return out | scores(slice(None))
