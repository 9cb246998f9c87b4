"""``python -m apps.pointer fit|validate|test|predict -c configs/pointer/default.yaml [-c overlay]``."""

from __future__ import annotations

from apps.pointer.data import PointerDataModule
from apps.pointer.task import PointerTask
from core.train.cli import ManyheadsCLI, cli_main

LINKS = [("data.problem", "model.problem")]


def main(args: list[str] | None = None) -> ManyheadsCLI:
    return cli_main(PointerTask, PointerDataModule, "pointer", args=args, links=LINKS)


if __name__ == "__main__":
    main()
