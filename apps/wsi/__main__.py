"""``python -m apps.wsi fit|validate|test|predict -c configs/wsi/default.yaml [-c overlay]``, and
``python -m apps.wsi preprocess -c configs/wsi/default.yaml``: steps 1–3 alone (slides → tiles →
feature files), with the same configs and flags."""

from __future__ import annotations

import sys

from apps.wsi.data import WSIDataModule
from apps.wsi.task import WSITask
from core.train import InputError, ManyheadsCLI, cli_main

LINKS = [("data.feature_dim", "model.feature_dim"), ("data.class_names", "model.class_names")]


def preprocess(args: list[str]) -> WSIDataModule:
    """Generate or open the slides, tile them and extract their features (resumable); the objects
    are built as for ``fit`` but nothing is trained and no run folder is made."""
    data = cli_main(WSITask, WSIDataModule, "wsi", args=args, links=LINKS, run=False).datamodule
    try:
        data.prepare_data()
    except InputError as error:
        print(f"error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"features in {data.feature_folder()}")
    return data


def main(args: list[str] | None = None, run: bool = True) -> ManyheadsCLI | WSIDataModule:
    """The app's CLI; ``args`` replaces ``sys.argv``, ``run=False`` only builds the objects."""
    args = sys.argv[1:] if args is None else args
    if args[:1] == ["preprocess"]:
        return preprocess(args[1:])
    return cli_main(WSITask, WSIDataModule, "wsi", args=args, links=LINKS, run=run)


if __name__ == "__main__":
    main()
