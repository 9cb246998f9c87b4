"""Lightning glue shared by every app: the CLI, the base task and datamodule, the shared callbacks,
run folders and figure saving."""

from core.train.cli import ManyheadsCLI, cli_main
from core.train.data import AppDataModule
from core.train.errors import InputError
from core.train.figures import save_figure
from core.train.task import AppTask, as_config

__all__ = [
    "AppDataModule",
    "AppTask",
    "InputError",
    "ManyheadsCLI",
    "as_config",
    "cli_main",
    "save_figure",
]
