"""``python -m apps.pointer fit|validate|test|predict -c configs/pointer/<name>.yaml``."""

from __future__ import annotations

from apps.pointer.data import PointerDataModule
from apps.pointer.task import PointerTask
from core.train.cli import cli_main


def main(args: list[str] | None = None):
    return cli_main(PointerTask, PointerDataModule, "pointer", args=args)


if __name__ == "__main__":
    main()
