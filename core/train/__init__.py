"""Lightning glue shared by every app: the CLI factory, run directories and figure saving."""

from core.train.cli import ManyheadsCLI, cli_main
from core.train.figures import save_figure

__all__ = ["ManyheadsCLI", "cli_main", "save_figure"]
