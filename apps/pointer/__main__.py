"""``python -m apps.pointer fit|validate|test|predict -c configs/pointer/default.yaml [-c overlay]``."""

from __future__ import annotations

from apps.pointer.data import PointerDataModule
from apps.pointer.task import PointerTask
from core.train.cli import ManyheadsCLI, cli_main

LINKS = [("data.problem", "model.problem")]


def main(args: list[str] | None = None, run: bool = True) -> ManyheadsCLI:
    """The app's CLI; ``args`` replaces ``sys.argv``, ``run=False`` only builds the objects."""
    return cli_main(PointerTask, PointerDataModule, "pointer", args=args, links=LINKS, run=run)


if __name__ == "__main__":
    main()
