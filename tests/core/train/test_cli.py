"""The shared CLI on a toy task: run folders, checkpoints, resume, errors, callbacks."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar, TQDMProgressBar

from tests.core.train.toy import main

REPO = Path(__file__).resolve().parents[3]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture
def config(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MANYHEADS_RUNS", raising=False)
    monkeypatch.setattr(sys, "argv", ["toy"])  # the CLI reads args=, not pytest's flags
    path = tmp_path / "toy_run.yaml"
    path.write_text(
        "trainer:\n  max_epochs: 2\n  enable_progress_bar: false\n"
        "  enable_model_summary: false\n  log_every_n_steps: 1\n"
        "model:\n  optimizer:\n    class_path: torch.optim.SGD\n    init_args:\n      lr: 0.1\n"
        "data:\n  batch_size: 16\n"
    )
    return path


RUN = Path("runs/toy/toy_run")


def read_metrics(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_fit_writes_one_folder_with_its_checkpoints(config, capsys):
    cli = main(["fit", "-c", str(config)])
    assert cli.trainer.current_epoch == 2
    for name in ("config.yaml", "metrics.csv", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (RUN / "fit" / name).is_file(), name
    assert sorted(p.name for p in (RUN / "fit/figures").glob("*.png")) == [
        "val_inputs_step000004.png",
        "val_inputs_step000008.png",
    ]
    assert any(row.get("val/loss") for row in read_metrics(RUN / "fit/metrics.csv"))
    assert "lr: 0.1" in (RUN / "fit/config.yaml").read_text()
    assert f"fit written to {RUN / 'fit'}" in capsys.readouterr().out


def test_data_dependent_sizes_reach_the_checkpoint_through_links(config):
    main(["fit", "-c", str(config), "--data.in_dim", "5", "--trainer.max_epochs", "1"])
    checkpoint = torch.load(RUN / "fit/checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["net"] == {"in_dim": 5, "bias": True}
    assert checkpoint["state_dict"]["net.weight"].shape == (1, 5)


def test_optimizer_and_scheduler_come_from_the_config(config):
    cli = main(["fit", "-c", str(config), "--trainer.max_epochs", "1",
                "--model.scheduler", "torch.optim.lr_scheduler.StepLR",
                "--model.scheduler.step_size", "1", "--model.scheduler.gamma", "0.5"])  # fmt: skip
    [optimizer] = cli.trainer.optimizers
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)  # one epoch of ×0.5


def test_checkpoint_aliases_pick_the_newest_fit(config, capsys):
    main(["fit", "-c", str(config), "--trainer.max_epochs", "1"])
    second = main(["fit", "-c", str(config), "--trainer.max_epochs", "1",
                   "--model.net.bias", "false"])  # fmt: skip
    assert "starts from scratch" in capsys.readouterr().err
    assert (RUN / "fit-2/checkpoints/last.ckpt").is_file()
    tested = main(["test", "-c", str(config), "--ckpt_path", "last"])
    assert tested.trainer.ckpt_path == str(RUN / "fit-2/checkpoints/last.ckpt")
    assert tested.model.net.bias is None  # the checkpoint's hyper-parameters, not the config's
    assert second.trainer.checkpoint_callback.best_model_path.endswith(
        "fit-2/checkpoints/best.ckpt"
    )


def test_resume_continues_into_its_own_folder(config):
    main(["fit", "-c", str(config)])
    train_rows = read_metrics(RUN / "fit/metrics.csv")
    resumed = main(["fit", "-c", str(config), "--trainer.max_epochs", "3", "--ckpt_path", "last"])
    assert resumed.trainer.current_epoch == 3
    assert read_metrics(RUN / "fit/metrics.csv") == train_rows
    assert any(row.get("val/loss") for row in read_metrics(RUN / "fit-2/metrics.csv"))


@pytest.mark.parametrize(
    "limit",
    [
        ["--trainer.max_steps", "5"],
        ["--model.step_seconds", "0.05", "--trainer.max_time", "00:00:00:01"],
        ["--model.interrupt_at_step", "3"],
    ],
    ids=["max_steps", "max_time", "ctrl-c"],
)
def test_last_checkpoint_holds_the_final_weights(config, limit):
    """Validation runs once an epoch of 4 steps; whatever stops training mid-epoch, last.ckpt has
    the weights of the last step, not of the last validation."""
    args = ["fit", "-c", str(config), "--data.size", "640", "--trainer.max_epochs", "5", *limit]
    try:
        cli = main(args)
        steps = cli.trainer.global_step
    except SystemExit:  # Lightning ends an interrupted run with exit status 1
        steps = 3
    assert steps % 40 != 0
    checkpoint = torch.load(RUN / "fit/checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == steps
    assert not any(str(key).startswith("Timer") for key in checkpoint["callbacks"])


def test_failed_run_leaves_no_stub_folder(config):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(config), "--data.size", "0"])
    assert exit_info.value.code == 2
    assert not (RUN / "fit").exists()
    main(["fit", "-c", str(config), "--trainer.max_epochs", "1"])
    assert (RUN / "fit/checkpoints/last.ckpt").is_file()


def run_toy(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(REPO / "tests/core/train/toy.py"), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data.size", "0"], "error: toy data: size must be positive, got 0"),
        (["--trainer.max_epoch", "3"], "error: unrecognized arguments: --trainer.max_epoch 3"),
        (["--ckpt_path", "best"], "error: --ckpt_path best: no best.ckpt under runs/toy/toy_run"),
    ],
    ids=["bad data", "abbreviated flag", "no checkpoint yet"],
)
def test_user_errors_are_one_line_with_exit_status_2(config, args, message):
    result = run_toy("test", "-c", str(config), *args, cwd=config.parent)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(message)


def test_listed_progress_bar_and_lr_monitor_are_not_doubled(config):
    listed = ["--trainer.callbacks+=TQDMProgressBar", "--trainer.callbacks+=LearningRateMonitor"]
    cli = main(["fit", "-c", str(config), "--trainer.max_epochs", "1",
                "--trainer.enable_progress_bar", "true", *listed])  # fmt: skip
    bars = [c for c in cli.trainer.callbacks if isinstance(c, ProgressBar)]
    monitors = [c for c in cli.trainer.callbacks if isinstance(c, LearningRateMonitor)]
    assert len(bars) == 1 and isinstance(bars[0], TQDMProgressBar)
    assert len(monitors) == 1


def test_test_writes_results_json(config):
    main(["fit", "-c", str(config), "--trainer.max_epochs", "1"])
    cli = main(["test", "-c", str(config), "--ckpt_path", "best"])
    results = json.loads((RUN / "test/results.json").read_text())
    assert results["metrics"]["test/loss"] == pytest.approx(
        float(cli.trainer.callback_metrics["test/loss"])
    )
    assert results["checkpoint"] == str(RUN / "fit/checkpoints/best.ckpt")
    assert results["data"]["counts"]["test"] == 64
    assert results["versions"]["torch"] == torch.__version__
    assert results["seed_everything"] == 0
    assert results["protocol"]["monitor"] == "val/loss"
    assert len(results["git"]["commit"] or "0" * 40) == 40


def test_predict_writes_one_line_per_input_in_order(config):
    cli = main(["fit", "-c", str(config), "--trainer.max_epochs", "1"])
    main(["predict", "-c", str(config), "--ckpt_path", "last"])
    lines = (RUN / "predict/predictions.txt").read_text().splitlines()
    x = cli.datamodule.datasets["predict"].tensors[0]
    expected = cli.model.net(x)[:, 0].tolist()
    assert [float(v) for v in lines] == pytest.approx(expected, abs=1e-5)


def test_ddp_on_two_cpu_processes(config):
    """Lightning's ddp strategy (gloo) trains through the same CLI. ddp re-executes the command line,
    so the run happens in a subprocess started from a script (not pytest, not ``python -c``)."""
    result = run_toy("fit", "-c", str(config), "--trainer.strategy", "ddp",
                     "--trainer.devices", "2", "--trainer.accelerator", "cpu",
                     "--trainer.max_epochs", "1", cwd=config.parent)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (config.parent / RUN / "fit/checkpoints/last.ckpt").is_file()
