"""``python -m apps.traffic fit|validate|test|predict -c configs/traffic/default.yaml [-c overlay]``."""

from __future__ import annotations

from apps.traffic.data import TrafficDataModule
from apps.traffic.task import TrafficTask
from core.train.cli import ManyheadsCLI, cli_main

# data-dependent: the road graph, the normaliser, the input width, the window lengths
LINKS = [
    ("data.graph", "model.graph"),
    ("data.scaler", "model.scaler"),
    ("data.in_channels", "model.in_channels"),
    ("data.history", "model.history"),
    ("data.horizon", "model.horizon"),
    ("data.interval_minutes", "model.interval_minutes"),
]


def main(args: list[str] | None = None, run: bool = True) -> ManyheadsCLI:
    """The app's CLI; ``args`` replaces ``sys.argv``, ``run=False`` only builds the objects."""
    return cli_main(TrafficTask, TrafficDataModule, "traffic", args=args, links=LINKS, run=run)


if __name__ == "__main__":
    main()
