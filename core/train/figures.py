"""Save matplotlib figures next to a run's logs (PNG under ``<log_dir>/figures/``) and into TensorBoard."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from lightning.pytorch.loggers import TensorBoardLogger


def save_figure(fig: plt.Figure, trainer: L.Trainer, name: str) -> Path:
    """Write ``fig`` as ``figures/<name>.png`` in the trainer's log dir, log it to TensorBoard when
    present, close it, and return the PNG path."""
    root = Path(trainer.log_dir or trainer.default_root_dir)
    path = root / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(name, fig, global_step=trainer.global_step, close=False)
    plt.close(fig)
    return path
