"""``python -m apps.pointer`` fit → test → predict on tiny generated data, in a temporary folder."""

from __future__ import annotations

import sys

import numpy as np

from apps.pointer.__main__ import main

from .conftest import CONFIGS

TINY = [
    "--run_name", "smoke",
    "--data.root", "cache",
    "--data.train_size", "64",
    "--data.val_size", "16",
    "--data.test_size", "16",
    "--data.batch_size", "32",
    "--model.hidden_dim", "16",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip


def test_fit_test_predict(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["pointer"])  # the CLI reads args=, not pytest's flags
    config = str(CONFIGS / "default.yaml")
    main(["fit", "-c", config, *TINY, "--trainer.max_epochs", "1",
          "--trainer.limit_train_batches", "2", "--trainer.val_check_interval", "1.0"])  # fmt: skip
    run = tmp_path / "runs" / "pointer" / "smoke"
    assert (run / "checkpoints" / "last.ckpt").exists()
    assert list(run.rglob("figures/val_examples_*.png"))  # fit logs may sit in a subfolder
    cli = main(["test", "-c", config, *TINY, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])
    metrics = cli.trainer.callback_metrics
    assert {"test/seq_acc", "test/area_coverage", "test/invalid_rate"} <= set(metrics)
    points = np.random.default_rng(0).random((7, 2))
    (tmp_path / "points.txt").write_text("\n".join(f"{x} {y}" for x, y in points))
    main(["predict", "-c", config, *TINY, "--data.predict_file", "points.txt",
          "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])  # fmt: skip
    [written] = run.rglob("predictions.txt")
    order = [int(i) for i in written.read_text().split("output")[1].split()]
    assert order[0] == order[-1] and set(order) <= set(range(1, 8))
