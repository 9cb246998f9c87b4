"""``python -m apps.recsys fit|validate|test|predict -c configs/recsys/default.yaml [-c overlay]``."""

from __future__ import annotations

from apps.recsys.data import RecsysDataModule
from apps.recsys.task import RecsysTask
from core.train.cli import ManyheadsCLI, cli_main

# data-dependent: the item vocabulary, the window length, TED's temperature (the teacher is data)
LINKS = [
    ("data.item_tokens", "model.item_tokens"),
    ("data.max_len", "model.max_len"),
    ("data.distill_temperature", "model.distill_temperature"),
]


def main(args: list[str] | None = None, run: bool = True) -> ManyheadsCLI:
    """The app's CLI; ``args`` replaces ``sys.argv``, ``run=False`` only builds the objects."""
    return cli_main(RecsysTask, RecsysDataModule, "recsys", args=args, links=LINKS, run=run)


if __name__ == "__main__":
    main()
