"""``python -m apps.wsi fit|validate|test|predict -c configs/wsi/default.yaml [-c overlay]``, and
``python -m apps.wsi preprocess -c configs/wsi/default.yaml``: steps 1–3 alone (slides → tiles →
feature files), with the same config."""

from __future__ import annotations

import sys

from jsonargparse import ActionConfigFile, ArgumentError, ArgumentParser

from apps.wsi.data import WSIDataModule
from apps.wsi.task import WSITask
from core.train import InputError, ManyheadsCLI, cli_main
from core.train.cli import show_app_logs

LINKS = [("data.feature_dim", "model.feature_dim"), ("data.class_names", "model.class_names")]


def preprocess(args: list[str]) -> WSIDataModule:
    """Generate or open the slides, tile them and extract their features (resumable), reading the
    ``data`` section of the app's configs; the other sections are accepted and ignored."""
    show_app_logs()
    parser = ArgumentParser(prog="python -m apps.wsi preprocess", exit_on_error=False)
    parser.add_argument("-c", "--config", action=ActionConfigFile)
    parser.add_class_arguments(WSIDataModule, "data")
    for section in ("trainer", "model"):
        parser.add_argument(f"--{section}", type=dict | None, default=None)
    parser.add_argument("--seed_everything", type=int | bool | None, default=None)
    try:
        config = parser.parse_args(args)
        data = parser.instantiate(config).data
        data.prepare_data()
    except (InputError, FileNotFoundError, ArgumentError) as error:
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
