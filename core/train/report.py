"""The demo report (``runs/demo/report.md``): what each app was asked to do, on which data, with which
model and budget; its test metrics beside the paper's numbers and a baseline, each metric explained;
the test-set figure; and the commands that reproduce the run and go further.

Each app describes itself once, in ``apps/<app>/demo.py`` as ``CARD = DemoCard(...)``; an app without a
card still gets its measured metrics, figures and commands.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.train.cli import ManyheadsCLI

PYTHON = ".venv/bin/python"
MISSING = "—"
FIGURE_NAME = re.compile(r"test_(?P<name>.+)_step\d+")


@dataclass(frozen=True)
class MetricRow:
    """One row of an app's table: a ``results.json`` metric, explained, beside the paper's value.

    ``fmt`` formats ours, the paper's and the baseline's value alike (``"{:.1%}"`` for accuracies).
    ``paper`` is None where the paper reports no such number.
    """

    key: str
    label: str
    meaning: str
    paper: float | None = None
    fmt: str = "{:.4g}"

    def format(self, value: float | None) -> str:
        if value is None:
            return MISSING
        return "n/a" if math.isnan(value) else self.fmt.format(value)


@dataclass(frozen=True)
class Baseline:
    """The table's baseline column: what it is (and whether it was computed or quoted), and its
    metrics by ``results.json`` key, from the finished ``test`` invocation (its datamodule holds the
    test set), so a computed baseline sees exactly the data the model was tested on."""

    description: str
    metrics: Callable[[ManyheadsCLI], dict[str, float]]


@dataclass(frozen=True)
class DemoCard:
    """How the demo presents one app.

    Args:
        title: the heading, e.g. "Pointer Networks: planar convex hull".
        task: one paragraph for a newcomer: the task, the data, the model.
        paper_source: where the paper column comes from (paper, table, setting).
        metrics: the table's rows, in order.
        baseline: the baseline column (None: no column).
        overlays: config files added after ``configs/<app>/default.yaml`` for the demo run.
        figures: caption by figure name (``figures/test_<name>_step<S>.png``).
        full_run_overlays: config files after ``default.yaml`` for the paper-scale run (none: no
            such section); full_run_note: what that run does and what the paper reports for it.
        variant: a short name for a card that is a second run of its app (another model on the
            same data); it trains under ``runs/<app>/demo-<variant>/``.
        variants: such cards, each run after this one with its own overlays and budget share.
    """

    title: str
    task: str
    paper_source: str
    metrics: tuple[MetricRow, ...]
    baseline: Baseline | None = None
    overlays: tuple[str, ...] = ()
    figures: dict[str, str] = field(default_factory=dict)
    full_run_overlays: tuple[str, ...] = ()
    full_run_note: str = ""
    variant: str = ""
    variants: tuple[DemoCard, ...] = ()

    def __post_init__(self) -> None:
        if any(not card.variant or card.variants for card in self.variants):
            raise ValueError("each of a card's variants needs a variant name and no variants")


@dataclass
class AppRun:
    """What the demo measured for one app: the two invocations' arguments and wall times, the steps
    trained, the test's ``results.json`` (path and content), its figures and the baseline's metrics."""

    app: str
    card: DemoCard | None
    budget_minutes: float
    fit_args: list[str]
    test_args: list[str]
    fit_seconds: float
    test_seconds: float
    steps: int
    checkpoint: str  # the alias tested: "best" (by the task's monitor) or "last"
    results_path: Path
    results: dict[str, Any]
    figures: list[Path]
    baseline: dict[str, float] = field(default_factory=dict)


def command(app: str, args: Sequence[str]) -> str:
    """The shell line that runs ``python -m apps.<app> <args>`` from the repository root."""
    return shlex.join([PYTHON, "-m", f"apps.{app}", *args])


def link(path: Path, report_dir: Path) -> str:
    """``path`` relative to the report's folder, with forward slashes (for markdown links)."""
    return Path(os.path.relpath(path.resolve(), report_dir.resolve())).as_posix()


def described_test_set(data: dict[str, Any]) -> str:
    """``10,000 examples of the built-in test set (`--data.seed 1234`)``, or the file they came
    from (``data`` as ``results.json`` holds it)."""
    count = data.get("counts", {}).get("test")
    counted = f"{count:,} examples" if count is not None else "the examples"
    test_file = data.get("files", {}).get("test")
    if test_file:
        return f"{counted} from `{test_file['path']}`"
    return f"{counted} of the built-in test set (`--data.seed {data.get('seed')}`)"


def described_checkpoint(run: AppRun) -> str:
    """Which weights were tested and why those."""
    path = run.results.get("checkpoint")
    if run.checkpoint == "best":
        monitor = run.results.get("protocol", {}).get("monitor", "validation metric")
        return f"the checkpoint with the best `{monitor}` (`{path}`)"
    return f"the {run.checkpoint} checkpoint (`{path}`)"


def this_run(run: AppRun) -> str:
    """The paragraph that says what this run actually did: budget, steps, test set, protocol, time."""
    results = run.results
    protocol = "; ".join(f"{name}: {value}" for name, value in results.get("protocol", {}).items())
    return (
        f"**This run.** Trained for at most {run.budget_minutes:.3g} min "
        f"({run.steps:,} optimiser steps), then tested {described_checkpoint(run)} "
        f"on {described_test_set(results.get('data', {}))}. Evaluation: {protocol}. "
        f"Wall time: fit {run.fit_seconds:.0f} s, test {run.test_seconds:.0f} s."
    )


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A markdown table; a ``|`` inside a cell is escaped."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [line(header), line(["---"] * len(header)), *map(line, rows)]


def metrics_table(run: AppRun) -> list[str]:
    """The card's rows (metric | what it measures | ours | paper | baseline), or every measured metric
    as it is when the app has no card."""
    measured = run.results.get("metrics", {})
    card = run.card
    if card is None:
        rows = [(f"`{key}`", f"{value:.4g}") for key, value in sorted(measured.items())]
        return table(("metric", "value"), rows)
    header = ["metric", "what it measures", "ours", "paper"]
    rows = [
        [
            f"{row.label} (`{row.key}`)",
            row.meaning,
            f"**{row.format(measured.get(row.key))}**",
            row.format(row.paper),
        ]
        for row in card.metrics
    ]
    if card.baseline is not None:
        header.append("baseline")
        for cells, row in zip(rows, card.metrics, strict=True):
            cells.append(row.format(run.baseline.get(row.key)))
    return table(header, rows)


def figure_lines(run: AppRun, report_dir: Path) -> list[str]:
    lines = []
    captions = run.card.figures if run.card else {}
    for figure in run.figures:
        match = FIGURE_NAME.fullmatch(figure.stem)
        name = match["name"] if match else figure.stem
        lines.append(f"![{run.app}: test-set {name}]({link(figure, report_dir)})")
        if name in captions:
            lines.append(f"*{captions[name]}*")
        lines.append("")
    return lines or ["No test-set figure was drawn.", ""]


def app_section(run: AppRun, report_dir: Path) -> list[str]:
    """One app's part of the report."""
    card = run.card
    lines = [f"## {card.title if card else run.app} (`apps/{run.app}`)", ""]
    if card:
        lines += [card.task, ""]
    else:
        lines += [f"No demo card yet (`apps/{run.app}/demo.py`): the measured metrics only.", ""]
    lines += [this_run(run), "", *metrics_table(run), ""]
    if card:
        lines += [f"Paper: {card.paper_source}.", ""]
        if card.baseline:
            lines += [f"Baseline: {card.baseline.description}.", ""]
    lines += figure_lines(run, report_dir)
    results = link(run.results_path, report_dir)
    lines += [
        f"Everything measured (all metrics, protocol, data with hashes, seed, checkpoint, package "
        f"versions, git commit): [`{run.results_path}`]({results}).",
        "",
        "Reproduce this run (from the repository root):",
        "",
        "```bash",
        command(run.app, run.fit_args),
        command(run.app, run.test_args),
        "```",
        "",
    ]
    if card and card.full_run_overlays:
        configs = [f"configs/{run.app}/default.yaml", *card.full_run_overlays]
        args = ["fit", *(arg for config in configs for arg in ("-c", config))]
        lines += [f"**Go further.** {card.full_run_note}", "", "```bash", command(run.app, args)]
        lines += ["```", ""]
    return lines


INTRO = (
    "Every app below was trained briefly on its built-in data (no downloads) and then tested, in a "
    "separate invocation, on the best checkpoint of that training. In each table, *ours* is this "
    "run's test result, *paper* is the number the paper reports for the task, and *baseline* is a "
    "reference point named under the table. A few minutes on a CPU are far from the paper's "
    "training budget: the commands under each app reproduce the run and start the full one."
)


def render(runs: Sequence[AppRun], report_dir: Path, header: str) -> str:
    """The whole report; ``header`` says the budget rule, the machine and the total time."""
    lines = ["# manyheads demo report", ""]
    if not runs:
        return "\n".join([*lines, "No app is installed yet: nothing to train.", ""])
    lines += [INTRO, "", header, ""]
    for run in runs:
        lines += app_section(run, report_dir)
    return "\n".join(lines)


def write_report(runs: Sequence[AppRun], path: Path, header: str = "") -> str:
    """Render the report into ``path`` (folders created) and return its text."""
    text = render(runs, path.parent, header)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text
