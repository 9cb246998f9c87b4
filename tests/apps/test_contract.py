"""The contract every app keeps, checked for every app that has an entry point and a default config:
fit, validate, test, predict and resume through the shared CLI at tiny size (the app's
``tests/apps/<app>/tiny.yaml`` overlay), a checkpoint that loads outside the CLI, and test metrics
under DDP equal to a single process's."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.train.demo import discover_apps

REPO = Path(__file__).resolve().parents[2]
APPS = discover_apps()


def configs(app: str) -> list[str]:
    return ["-c", str(REPO / "configs" / app / "default.yaml"),
            "-c", str(REPO / "tests" / "apps" / app / "tiny.yaml")]  # fmt: skip


def test_every_app_brings_a_tiny_overlay():
    assert APPS, "no app discovered"
    for app in APPS:
        assert (REPO / "tests" / "apps" / app / "tiny.yaml").is_file(), app


@pytest.mark.parametrize("app", APPS)
def test_fit_validate_test_predict_resume(app, in_tmp):
    main = importlib.import_module(f"apps.{app}.__main__").main
    run = in_tmp / "runs" / app / "tiny"
    fitted = main(["fit", *configs(app), "--trainer.max_steps", "2"])
    assert fitted.trainer.global_step == 2
    assert (run / "fit/checkpoints/last.ckpt").is_file()

    validated = main(["validate", *configs(app), "--ckpt_path", "last"])
    assert validated.model.monitor in validated.trainer.callback_metrics

    main(["test", *configs(app), "--ckpt_path", "best"])
    results = json.loads((run / "test/results.json").read_text())
    assert results["metrics"] and results["checkpoint"].endswith("fit/checkpoints/best.ckpt")
    assert list((run / "test/figures").glob("test_*.png"))

    main(["predict", *configs(app), "--ckpt_path", "last"])
    [predictions] = (run / "predict").glob("predictions*")
    assert predictions.stat().st_size > 0

    resumed = main(["fit", *configs(app), "--ckpt_path", "last", "--trainer.max_steps", "4",
                    "--trainer.max_epochs", "100"])  # fmt: skip
    assert resumed.trainer.global_step == 4
    assert (run / "fit-2/checkpoints/last.ckpt").is_file()

    # outside the CLI, the checkpoint alone rebuilds the model (data-dependent sizes included)
    task_class = type(fitted.model)
    loaded = task_class.load_from_checkpoint(run / "fit-2/checkpoints/last.ckpt")
    for name, tensor in resumed.model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor)


def cli_run(app: str, *args: str, cwd: Path) -> None:
    """``python -m apps.<app> …`` in a fresh process (ddp re-executes the command line)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "MANYHEADS_RUNS": str(cwd / "runs")}
    result = subprocess.run(
        [sys.executable, "-m", f"apps.{app}", args[0], *configs(app), *args[1:]],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("app", APPS)
def test_ddp_test_metrics_equal_one_process(app, in_tmp):
    """fit + test on 2 CPU processes (gloo); the logged test metrics equal a single process's test
    of the same checkpoint (the tiny test set splits evenly, so no sample is repeated). The single
    process runs in this one: only DDP needs a fresh interpreter."""
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    cli_run(app, "fit", *ddp, "--trainer.max_steps", "2", cwd=in_tmp)
    cli_run(app, "test", *ddp, "--ckpt_path", "last", cwd=in_tmp)
    main = importlib.import_module(f"apps.{app}.__main__").main
    main(["test", *configs(app), "--ckpt_path", "last"])
    run = in_tmp / "runs" / app / "tiny"
    two = json.loads((run / "test/results.json").read_text())
    one = json.loads((run / "test-2/results.json").read_text())
    assert two["processes"] == 2 and one["processes"] == 1
    assert two["metrics"].keys() == one["metrics"].keys()
    for name, value in one["metrics"].items():
        assert two["metrics"][name] == pytest.approx(value, rel=1e-5, abs=1e-6, nan_ok=True), name
