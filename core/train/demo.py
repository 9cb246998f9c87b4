"""The main job (``nox -s demo``): every app trains briefly on its built-in default data, is tested on its
best checkpoint, and ``runs/demo/report.md`` collects the test metrics and the figures.

An app takes part when it has ``apps/<app>/__main__.py`` with ``main(args)`` and
``configs/<app>/default.yaml``. ``python -m core.train.demo --minutes 2 pointer`` limits time and apps.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from core.train.runs import runs_root

CONFIGS = Path("configs")


def discover_apps() -> list[str]:
    """Apps with an entry point and a default config, in name order."""
    apps_dir = Path(importlib.import_module("apps").__path__[0])
    return sorted(
        p.parent.name
        for p in apps_dir.glob("*/__main__.py")
        if (CONFIGS / p.parent.name / "default.yaml").is_file()
    )


def run_app(app: str, minutes: float) -> tuple[dict[str, float], list[Path], float]:
    """Fit for at most ``minutes``, test the best checkpoint; return metrics, figures and seconds."""
    main = importlib.import_module(f"apps.{app}.__main__").main
    start = time.perf_counter()
    hours, rest = divmod(int(minutes * 60), 3600)
    cli = main(
        [
            "fit",
            "-c",
            str(CONFIGS / app / "default.yaml"),
            "--run_name",
            "demo",
            "--trainer.max_time",
            f"00:{hours:02d}:{rest // 60:02d}:{rest % 60:02d}",
        ]
    )
    has_best = bool(
        cli.trainer.checkpoint_callback and cli.trainer.checkpoint_callback.best_model_path
    )
    results = cli.trainer.test(
        cli.model, datamodule=cli.datamodule, ckpt_path="best" if has_best else None
    )
    metrics = {k: float(v) for result in results for k, v in result.items()}
    figures = sorted(Path(cli.trainer.log_dir).rglob("*.png"))
    return metrics, figures, time.perf_counter() - start


def write_report(rows: dict[str, tuple[dict[str, float], list[Path], float]]) -> str:
    lines = ["# manyheads demo report", ""]
    if not rows:
        lines.append("No app is installed yet: nothing to train.")
    for app, (metrics, figures, seconds) in rows.items():
        lines += [f"## {app}", "", f"Trained and tested in {seconds:.0f} s.", ""]
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| `{name}` | {value:.4g} |" for name, value in sorted(metrics.items())]
        lines.append("")
        for fig in figures[-3:]:
            rel = Path("..") / fig.relative_to(runs_root())
            lines += [f"![{app} {fig.stem}]({rel.as_posix()})", ""]
    text = "\n".join(lines)
    runs_root() / "demo" / "report.md".parent.mkdir(parents=True, exist_ok=True)
    runs_root() / "demo" / "report.md".write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("apps", nargs="*", help="apps to run (default: all that exist)")
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget per app")
    args = parser.parse_args(argv)
    available = discover_apps()
    unknown = sorted(set(args.apps) - set(available))
    if unknown:
        raise SystemExit(f"unknown app(s) {unknown}; available: {available}")
    rows = {app: run_app(app, args.minutes) for app in (args.apps or available)}
    write_report(rows)
    print(f"report written to {runs_root() / 'demo' / 'report.md'}")


if __name__ == "__main__":
    main()
