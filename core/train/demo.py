"""The main job (``nox -s demo``): every app trains briefly on its built-in data, is tested in a
separate invocation on the checkpoint that training chose, and ``runs/demo/report.md`` says what was
measured, against what, and how to reproduce it (:mod:`core.train.report`).

An app takes part when it has ``apps/<app>/__main__.py`` with ``main(args)`` and
``configs/<app>/default.yaml``; ``apps/<app>/demo.py`` declares its ``CARD`` (task, paper numbers,
baseline), whose ``variants`` are further runs of the app (another model on the same data). Run
from the repository root: ``python -m core.train.demo [--minutes M] [app ...]``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from core.train.cli import ManyheadsCLI
from core.train.report import AppRun, DemoCard, write_report
from core.train.runs import runs_root

CONFIGS = Path("configs")
RUN_NAME = "demo"
TOTAL_MINUTES = 13.0  # training time of all runs together: the demo stays under ~15 minutes
MAX_RUN_MINUTES = 4.0


def discover_apps() -> list[str]:
    """Apps with an entry point and a default config, in name order."""
    found = {
        entry.parent.name
        for folder in importlib.import_module("apps").__path__
        for entry in Path(folder).glob("*/__main__.py")
    }
    return sorted(app for app in found if (CONFIGS / app / "default.yaml").is_file())


def load_card(app: str) -> DemoCard | None:
    """``CARD`` of ``apps/<app>/demo.py``, or None when the app has no such module."""
    if importlib.util.find_spec(f"apps.{app}.demo") is None:
        return None
    card = getattr(importlib.import_module(f"apps.{app}.demo"), "CARD", None)
    if not isinstance(card, DemoCard):
        raise TypeError(f"apps/{app}/demo.py must define CARD = DemoCard(...), found {card!r}")
    return card


def demo_cards(app: str) -> list[DemoCard | None]:
    """The runs the demo makes of ``app``: its card, then the card's variants ([None]: no card)."""
    card = load_card(app)
    return [card, *card.variants] if card else [None]


def run_name(card: DemoCard | None) -> str:
    """``demo``, or ``demo-<variant>`` for a variant's run."""
    return f"{RUN_NAME}-{card.variant}" if card and card.variant else RUN_NAME


def budget_minutes(n_runs: int) -> float:
    """Training minutes per run: ``min(4, 13 / n_runs)``, shrinking as apps are added."""
    return min(MAX_RUN_MINUTES, TOTAL_MINUTES / max(n_runs, 1))


def max_time(minutes: float) -> str:
    """Lightning's ``--trainer.max_time`` (``DD:HH:MM:SS``) for ``minutes``, to the second."""
    minutes_total, seconds = divmod(round(minutes * 60), 60)
    hours_total, minutes_left = divmod(minutes_total, 60)
    days, hours = divmod(hours_total, 24)
    return f"{days:02d}:{hours:02d}:{minutes_left:02d}:{seconds:02d}"


def invocation_folder(cli: ManyheadsCLI) -> Path:
    if cli.log_dir is None:
        raise RuntimeError(
            "the demo needs the CLI's own run folder; the config sets its own logger"
        )
    return cli.log_dir


def run_app(
    app: str, card: DemoCard | None, minutes: float, extra_args: Sequence[str] = ()
) -> AppRun:
    """``fit`` for at most ``minutes``, then ``test --ckpt_path best`` (``last`` when no validation
    ran), both through the app's CLI under ``runs/<app>/<run_name(card)>/`` with the card's
    overlays; ``extra_args`` go to both."""
    main = importlib.import_module(f"apps.{app}.__main__").main
    configs = [str(CONFIGS / app / "default.yaml"), *(card.overlays if card else ())]
    common = [*(arg for config in configs for arg in ("-c", config)), *extra_args]
    common += ["--run_name", run_name(card)]
    fit_args = ["fit", *common, "--trainer.max_time", max_time(minutes)]
    start = time.perf_counter()
    fitted = main(fit_args)
    fit_seconds = time.perf_counter() - start
    has_best = (invocation_folder(fitted) / "checkpoints" / "best.ckpt").is_file()
    checkpoint = "best" if has_best else "last"
    test_args = ["test", *common, "--ckpt_path", checkpoint]
    start = time.perf_counter()
    tested = main(test_args)
    test_seconds = time.perf_counter() - start
    folder = invocation_folder(tested)
    results_path = folder / "results.json"
    return AppRun(
        app=app,
        card=card,
        budget_minutes=minutes,
        fit_args=fit_args,
        test_args=test_args,
        fit_seconds=fit_seconds,
        test_seconds=test_seconds,
        steps=fitted.trainer.global_step,
        checkpoint=checkpoint,
        results_path=results_path,
        results=json.loads(results_path.read_text()),
        figures=sorted((folder / "figures").glob("test_*.png")),
        baseline=card.baseline.metrics(tested) if card and card.baseline else {},
    )


def machine() -> str:
    """Where the demo ran, in a few words (timings mean little without it)."""
    cpus = f"{os.cpu_count()} CPU cores ({platform.machine()}), {torch.get_num_threads()} threads"
    return f"{torch.cuda.get_device_name()}, {cpus}" if torch.cuda.is_available() else cpus


def positive_minutes(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"minutes must be positive, got {text}")
    return value


def main(argv: list[str] | None = None) -> Path:
    """Run the apps, write the report; return its path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("apps", nargs="*", help="apps to run (default: all that exist)")
    parser.add_argument(
        "--minutes",
        type=positive_minutes,
        help=f"training budget per run (default: min({MAX_RUN_MINUTES:g}, "
        f"{TOTAL_MINUTES:g} / number of runs))",
    )
    parser.add_argument(
        "--extra-args",
        default="",
        help="arguments appended to every app's fit and test, e.g. "
        '--extra-args="-c tests/apps/pointer/tiny.yaml" (tests use it for a tiny run)',
    )
    args = parser.parse_args(argv)
    available = discover_apps()
    unknown = sorted(set(args.apps) - set(available))
    if unknown:
        parser.error(f"unknown app(s) {unknown}; available: {available}")
    jobs = [(app, card) for app in args.apps or available for card in demo_cards(app)]
    minutes = args.minutes or budget_minutes(len(jobs))
    rule = (
        f"min({MAX_RUN_MINUTES:g}, {TOTAL_MINUTES:g} / {len(jobs)} runs): the demo stays < 15 min"
    )
    if args.minutes:
        rule = "set with --minutes"
    start = time.perf_counter()
    runs = [run_app(app, card, minutes, shlex.split(args.extra_args)) for app, card in jobs]
    header = (
        f"Budget: {minutes:.3g} min of training per run ({rule}). Total wall time "
        f"{time.perf_counter() - start:.0f} s on {machine()}, {time.strftime('%Y-%m-%d')}."
    )
    path = runs_root() / "demo" / "report.md"
    write_report(runs, path, header)
    print(f"report written to {path}")
    return path


if __name__ == "__main__":
    main()
