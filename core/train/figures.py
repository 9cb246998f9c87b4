"""Save matplotlib figures next to a run's logs (PNG under ``<log_dir>/figures/``) and into TensorBoard."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from lightning.pytorch.loggers import TensorBoardLogger


def run_folder(trainer: L.Trainer) -> Path:
    """This invocation's folder (config, logs, figures, predictions, results). Unlike
    ``trainer.log_dir`` it is no collective call, so rank 0 alone may ask for it."""
    return Path(trainer.loggers[0].log_dir if trainer.loggers else trainer.default_root_dir)


def write_png(fig: plt.Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` as the PNG every figure of a run is (110 dpi, tight), close it and
    return ``path``."""
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def save_figure(fig: plt.Figure, trainer: L.Trainer, name: str) -> Path:
    """Write ``fig`` as ``figures/<name>.png`` in the invocation's folder, log it to TensorBoard when
    present, close it, and return the PNG path."""
    path = run_folder(trainer) / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(name, fig, global_step=trainer.global_step, close=False)
    return write_png(fig, path)
