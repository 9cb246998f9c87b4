"""The demo: app and card discovery, the budget rule, the report's contents, and one real tiny run."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

import apps
from apps.pointer.data import PointSets
from apps.pointer.demo import CARD as POINTER_CARD
from apps.pointer.demo import angle_sort_metrics
from apps.pointer.generate import generate
from core.train import demo
from core.train.report import AppRun, Baseline, DemoCard, MetricRow, render, write_report

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "tests/apps/pointer/tiny.yaml"

CARD = DemoCard(
    title="Toy sums",
    task="**Task.** Add two numbers. **Data.** Random pairs. **Model.** One linear layer.",
    paper_source="Nobody et al. 2020, Table 9",
    metrics=(
        MetricRow("test/acc", "accuracy", "share of exact sums", paper=0.92, fmt="{:.1%}"),
        MetricRow("test/mae", "mean absolute error", "average |error|; lower is better"),
    ),
    baseline=Baseline("always answer zero, computed on the same test set", lambda cli: {}),
    figures={"inputs": "The test inputs."},
    full_run_overlays=("configs/toy/big.yaml",),
    full_run_note="The paper's setting.",
)


def toy_args(subcommand: str) -> list[str]:
    return [subcommand, "-c", "configs/toy/default.yaml", "--run_name", "demo"]


def fake_run(runs: Path, card: DemoCard | None = CARD) -> AppRun:
    """What run_app returns for a toy app whose test wrote ``runs/toy/demo/test/``."""
    test_dir = runs / "toy/demo/test"
    return AppRun(
        app="toy",
        card=card,
        budget_minutes=2.0,
        fit_args=[*toy_args("fit"), "--trainer.max_time", "00:00:02:00"],
        test_args=[*toy_args("test"), "--ckpt_path", "best"],
        fit_seconds=118.4,
        test_seconds=6.2,
        steps=1234,
        checkpoint="best",
        results_path=test_dir / "results.json",
        results={
            "metrics": {"test/acc": 0.91234, "test/loss": 0.25},
            "protocol": {"monitor": "val/loss", "decoding": "greedy"},
            "data": {"counts": {"test": 10000}, "files": {}, "seed": 7},
            "checkpoint": str(runs / "toy/demo/fit/checkpoints/best.ckpt"),
        },
        figures=[test_dir / "figures/test_inputs_step001234.png"],
        baseline={"test/acc": 0.1, "test/mae": float("nan")},
    )


def table_row(text: str, label: str) -> list[str]:
    """The cells of the table row of metric ``label`` (``\\|`` is a pipe inside a cell)."""
    [line] = [line for line in text.splitlines() if line.startswith(f"| {label} (")]
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]


def test_empty_report_says_so(tmp_path):
    text = write_report([], tmp_path / "demo/report.md")
    assert "No app is installed yet" in text
    assert (tmp_path / "demo/report.md").read_text() == text


def test_report_explains_the_task_and_the_run(tmp_path):
    text = render([fake_run(tmp_path)], tmp_path / "demo", header="Budget: 2 min per app.")
    assert "## Toy sums (`apps/toy`)" in text
    assert CARD.task in text
    assert "Budget: 2 min per app." in text
    this_run = next(line for line in text.splitlines() if line.startswith("**This run.**"))
    facts = ("at most 2 min", "1,234 optimiser steps", "best `val/loss`", "fit/checkpoints/best",
             "10,000 examples", "`--data.seed 7`", "decoding: greedy", "fit 118 s", "test 6 s")  # fmt: skip
    for fact in facts:
        assert fact in this_run, fact


def test_every_metric_row_has_meaning_ours_paper_and_baseline(tmp_path):
    text = render([fake_run(tmp_path)], tmp_path / "demo", header="")
    assert "| metric | what it measures | ours | paper | baseline |\n| --- | --- |" in text
    assert table_row(text, "accuracy") == [
        "accuracy (`test/acc`)", "share of exact sums", "**91.2%**", "92.0%", "10.0%",
    ]  # fmt: skip
    # not measured by the test, not reported by the paper, NaN for the baseline
    assert table_row(text, "mean absolute error")[1:] == [
        "average \\|error\\|; lower is better", "**—**", "—", "n/a",
    ]  # fmt: skip
    assert "Paper: Nobody et al. 2020, Table 9." in text
    assert "Baseline: always answer zero, computed on the same test set." in text


def test_report_links_the_test_figure_and_results(tmp_path):
    text = render([fake_run(tmp_path)], tmp_path / "demo", header="")
    assert "![toy: test-set inputs](../toy/demo/test/figures/test_inputs_step001234.png)" in text
    assert "*The test inputs.*" in text
    assert "](../toy/demo/test/results.json)" in text


def test_report_gives_the_commands_that_reproduce_the_run(tmp_path):
    text = render([fake_run(tmp_path)], tmp_path / "demo", header="")
    for line in (
        ".venv/bin/python -m apps.toy fit -c configs/toy/default.yaml --run_name demo "
        "--trainer.max_time 00:00:02:00",
        ".venv/bin/python -m apps.toy test -c configs/toy/default.yaml --run_name demo "
        "--ckpt_path best",
        ".venv/bin/python -m apps.toy fit -c configs/toy/default.yaml -c configs/toy/big.yaml",
    ):
        assert f"\n{line}\n" in text, line
    assert "**Go further.** The paper's setting." in text


def test_an_app_without_a_card_gets_its_measured_metrics(tmp_path):
    text = render([fake_run(tmp_path, card=None)], tmp_path / "demo", header="")
    assert "## toy (`apps/toy`)" in text
    assert "| `test/acc` | 0.9123 |" in text and "| `test/loss` | 0.25 |" in text
    assert "](../toy/demo/test/figures/test_inputs_step001234.png)" in text
    assert ".venv/bin/python -m apps.toy test" in text


def test_discovers_apps_with_an_entry_point_and_default_config(monkeypatch):
    monkeypatch.chdir(REPO)
    found = demo.discover_apps()
    assert "pointer" in found and found == sorted(found)
    for app in found:
        assert Path(f"apps/{app}/__main__.py").is_file()
        assert Path(f"configs/{app}/default.yaml").is_file()


@pytest.fixture
def extra_apps(tmp_path, monkeypatch) -> Path:
    """A second folder of apps (``demo_nocard``: entry point and config, no card; ``demo_badcard``: a
    demo module without ``CARD``; ``demo_noconfig``: no default config), the cwd holding configs/."""
    folder = tmp_path / "more_apps"
    for app in ("demo_nocard", "demo_badcard", "demo_noconfig"):
        (folder / app).mkdir(parents=True)
        (folder / app / "__init__.py").write_text("")
        (folder / app / "__main__.py").write_text("")
    (folder / "demo_badcard/demo.py").write_text("NOT_A_CARD = 1\n")
    for app in ("demo_nocard", "demo_badcard"):
        (tmp_path / "configs" / app).mkdir(parents=True)
        (tmp_path / "configs" / app / "default.yaml").write_text("")
    monkeypatch.setattr(apps, "__path__", [*apps.__path__, str(folder)])
    monkeypatch.chdir(tmp_path)
    return folder


def test_discovery_and_cards_of_apps(extra_apps):
    assert demo.discover_apps() == ["demo_badcard", "demo_nocard"]  # no configs/pointer here
    assert demo.load_card("demo_nocard") is None
    with pytest.raises(TypeError, match=r"apps/demo_badcard/demo.py must define CARD"):
        demo.load_card("demo_badcard")
    assert demo.load_card("pointer") is POINTER_CARD


def test_a_cards_variants_are_runs_of_their_own():
    variant = replace(CARD, title="Toy, other model", overlays=("configs/toy/other.yaml",))
    with pytest.raises(ValueError, match="variant name"):
        replace(CARD, variants=(variant,))
    named = replace(variant, variant="other")
    card = replace(CARD, variants=(named,))
    assert [demo.run_name(c) for c in (None, card, named)] == ["demo", "demo", "demo-other"]
    with pytest.raises(ValueError, match="no variants"):
        replace(CARD, variants=(replace(named, variants=(named,)),))
    assert demo.demo_cards("pointer") == [POINTER_CARD]
    pointcloud = demo.demo_cards("pointcloud")
    assert [demo.run_name(c) for c in pointcloud] == ["demo", "demo-scatterformer"]
    assert pointcloud[1].overlays == ("configs/pointcloud/scatterformer.yaml",)


def test_the_budget_shrinks_as_apps_are_added():
    assert demo.budget_minutes(1) == demo.budget_minutes(3) == 4.0
    assert demo.budget_minutes(4) == pytest.approx(13 / 4)
    assert demo.budget_minutes(7) == pytest.approx(13 / 7)
    for n_apps in range(1, 12):
        assert n_apps * demo.budget_minutes(n_apps) <= 13.0 + 1e-9


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        (2.5, "00:00:02:30"),
        (13 / 7, "00:00:01:51"),
        (90, "00:01:30:00"),
        (24 * 60 + 1, "01:00:01:00"),
    ],
)
def test_max_time_is_lightnings_format(minutes, expected):
    assert demo.max_time(minutes) == expected


@pytest.mark.parametrize("argv", [["no_such_app"], ["--minutes", "0"]])
def test_bad_arguments_stop_before_training(argv, capsys):
    with pytest.raises(SystemExit):
        demo.main(argv)
    assert "error:" in capsys.readouterr().err


def test_angle_sort_baseline_is_exact_only_when_every_point_is_a_corner():
    points, targets = generate("convex_hull", (5, 5), 300, seed=3)
    cli = SimpleNamespace(
        model=SimpleNamespace(problem="convex_hull"),
        datamodule=SimpleNamespace(datasets={"test": PointSets(points, targets)}),
    )
    metrics = angle_sort_metrics(cli)
    all_corners = sum(len(target) == 6 for target in targets) / len(targets)  # 5 corners + return
    assert metrics["test/seq_acc"] == pytest.approx(all_corners)
    assert metrics["test/invalid_rate"] == 0.0  # a star around the centroid never crosses itself
    assert all_corners < metrics["test/area_coverage"] < 1.0


def test_the_demo_trains_tests_and_reports_the_pointer_app(tmp_path, monkeypatch):
    """The real thing at a tiny size: fit, a separate test on the best checkpoint, the report."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("MANYHEADS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(sys, "argv", ["demo"])  # the CLI reads args=, not pytest's flags
    extra = f"-c {TINY} --data.root {tmp_path / 'data'}"
    path = demo.main(["pointer", "--minutes", "1", f"--extra-args={extra}"])
    assert path == tmp_path / "runs/demo/report.md"
    text = path.read_text()

    [figure] = re.findall(r"!\[pointer: test-set examples\]\((.+?)\)", text)
    assert figure.startswith("../pointer/demo/test/figures/test_examples_")
    assert (path.parent / figure).is_file()
    results = json.loads((tmp_path / "runs/pointer/demo/test/results.json").read_text())
    assert results["checkpoint"] == str(tmp_path / "runs/pointer/demo/fit/checkpoints/best.ckpt")
    for row in POINTER_CARD.metrics:
        _, _, ours, paper, baseline = table_row(text, row.label)
        assert ours == f"**{row.format(results['metrics'][row.key])}**"
        assert paper == row.format(row.paper)
        assert re.fullmatch(r"\d+\.\d+%", baseline), baseline
    assert f"fit -c configs/pointer/default.yaml -c {TINY} --data.root" in text
    assert "--run_name demo --ckpt_path best" in text
    assert f"**Go further.** {POINTER_CARD.full_run_note}" in text
    assert "fit -c configs/pointer/default.yaml -c configs/pointer/convex_hull.yaml\n" in text
    assert "Budget: 1 min of training per run (set with --minutes)." in text
