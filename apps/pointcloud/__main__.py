"""``python -m apps.pointcloud fit|validate|test|predict -c configs/pointcloud/default.yaml [-c overlay]``."""

from __future__ import annotations

from apps.pointcloud.data import PointCloudDataModule
from apps.pointcloud.task import PointCloudTask
from core.train import ManyheadsCLI, cli_main

LINKS = [("data.grid", "model.grid")]


def main(args: list[str] | None = None, run: bool = True) -> ManyheadsCLI:
    """The app's CLI; ``args`` replaces ``sys.argv``, ``run=False`` only builds the objects."""
    return cli_main(
        PointCloudTask, PointCloudDataModule, "pointcloud", args=args, links=LINKS, run=run
    )


if __name__ == "__main__":
    main()
