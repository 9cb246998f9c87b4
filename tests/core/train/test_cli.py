import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.core.train.toy import main

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def config(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "toy_run.yaml"
    path.write_text("trainer:\n  max_epochs: 2\n  enable_progress_bar: false\nmodel:\n  lr: 0.1\n")
    return path


def read_metrics(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_fit_writes_the_run_directory(config):
    cli = main(["fit", "-c", str(config)])
    run = Path("runs/toy/toy_run")
    assert cli.trainer.current_epoch == 2
    for name in (
        "fit/config.yaml",
        "fit/metrics.csv",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
    ):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "fit/figures").glob("*.png")) == [
        "weights_epoch000.png",
        "weights_epoch001.png",
    ]
    assert any(row.get("val/loss") for row in read_metrics(run / "fit/metrics.csv"))
    assert "lr: 0.1" in (run / "fit/config.yaml").read_text()


def test_test_and_resume_keep_the_training_logs(config):
    main(["fit", "-c", str(config)])
    run = Path("runs/toy/toy_run")
    train_rows = read_metrics(run / "fit/metrics.csv")
    for _ in range(2):
        main(["test", "-c", str(config), "--ckpt_path", str(run / "checkpoints/best.ckpt")])
    resumed = main(["fit", "-c", str(config), "--trainer.max_epochs", "3",
                    "--ckpt_path", str(run / "checkpoints/last.ckpt")])  # fmt: skip
    assert resumed.trainer.current_epoch == 3
    assert read_metrics(run / "fit/metrics.csv") == train_rows
    for test_dir in ("test", "test-2"):
        assert any(row.get("test/loss") for row in read_metrics(run / test_dir / "metrics.csv"))
    assert any(row.get("val/loss") for row in read_metrics(run / "fit-2/metrics.csv"))


def test_run_name_and_predict(config):
    cli = main(["fit", "-c", str(config), "--run_name", "named", "--trainer.max_epochs", "1"])
    assert Path("runs/toy/named/checkpoints/last.ckpt").is_file()
    preds = cli.trainer.predict(cli.model, datamodule=cli.datamodule)
    assert torch.cat(preds).shape == (64, 1)


def test_ddp_on_two_cpu_processes(config):
    """Lightning's ddp strategy (gloo) trains through the same CLI. ddp re-executes the command line,
    so the run happens in a subprocess started from a script (not pytest, not ``python -c``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, str(REPO / "tests/core/train/toy.py"), "fit", "-c", str(config),
         "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
         "--trainer.max_epochs", "1"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert Path("runs/toy/toy_run/checkpoints/last.ckpt").is_file()
