"""``python -m apps.music fit|validate|test|predict -c configs/music/default.yaml [-c overlay]``."""

from __future__ import annotations

from apps.music.data import MusicDataModule
from apps.music.task import MusicTask
from core.train.cli import ManyheadsCLI, cli_main

LINKS = [("data.representation_name", "model.representation")]  # grid or performance tokens


def main(args: list[str] | None = None, run: bool = True) -> ManyheadsCLI:
    """The app's CLI; ``args`` replaces ``sys.argv``, ``run=False`` only builds the objects."""
    return cli_main(MusicTask, MusicDataModule, "music", args=args, links=LINKS, run=run)


if __name__ == "__main__":
    main()
