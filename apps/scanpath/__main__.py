"""``python -m apps.scanpath fit|validate|test|predict -c configs/scanpath/default.yaml [-c overlay]``."""

from __future__ import annotations

from apps.scanpath.data import ScanpathDataModule
from apps.scanpath.task import ScanpathTask
from core.train import ManyheadsCLI, cli_main

LINKS = [
    ("data.grid", "model.grid"),
    ("data.crop_size", "model.crop_size"),
    ("data.max_length", "model.max_fixations"),
    ("data.mean_length", "model.baseline_length"),
]


def main(args: list[str] | None = None, run: bool = True) -> ManyheadsCLI:
    """The app's CLI; ``args`` replaces ``sys.argv``, ``run=False`` only builds the objects."""
    return cli_main(ScanpathTask, ScanpathDataModule, "scanpath", args=args, links=LINKS, run=run)


if __name__ == "__main__":
    main()
