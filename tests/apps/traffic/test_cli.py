"""``python -m apps.traffic`` end to end at tiny size: the shared Los Angeles files, a user's window
files for test and predict, the results file, and bad input (exit 2, one line, nothing left)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from apps.traffic.__main__ import main

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs" / "traffic"
TINY = Path(__file__).parent / "tiny.yaml"
BASE = ["-c", str(CONFIGS / "default.yaml"), "-c", str(TINY)]


def write_tgcn(folder: Path, steps: int = 600, sensors: int = 6) -> list[str]:
    """A small T-GCN pair (speeds with a daily wave, a chain graph); returns the data flags."""
    rng = np.random.default_rng(0)
    t = np.arange(steps)[:, None]
    speed = (
        55
        + 10 * np.sin(2 * np.pi * t / 288 + np.arange(sensors))
        + rng.normal(0, 1, (steps, sensors))
    )
    speed[rng.random(speed.shape) < 0.03] = 0.0
    ids = [str(700 + i) for i in range(sensors)]
    rows = [",".join(ids)] + [",".join(f"{v:.3f}" for v in row) for row in speed]
    (folder / "speed.csv").write_text("\n".join(rows) + "\n")
    adjacency = np.eye(sensors) + np.eye(sensors, k=1) * 0.5
    (folder / "adj.csv").write_text("\n".join(",".join(map(str, r)) for r in adjacency) + "\n")
    return ["--data.format", "tgcn", "--data.values_file", "speed.csv",
            "--data.graph_file", "adj.csv", "--data.start_time", "2024-03-04 00:00"]  # fmt: skip


def test_files_test_windows_and_predict_csv(in_tmp):
    flags = write_tgcn(in_tmp)
    main(["fit", *BASE, *flags, "--data.root", "."])
    run = in_tmp / "runs" / "traffic" / "tiny"
    main(["test", *BASE, *flags, "--data.root", ".", "--ckpt_path", "best"])
    results = json.loads((run / "test/results.json").read_text())
    metrics = results["metrics"]
    for name in ("MAE@15min", "RMSE@30min", "MAPE@60min", "MAE"):
        assert np.isfinite(metrics[f"test/{name}"]) and np.isfinite(metrics[f"test/HA/{name}"])
        assert np.isfinite(metrics[f"test/last_value/{name}"])
    assert results["data"]["masking"]["null_value"] == 0.0
    assert results["data"]["files"]["values"]["path"].endswith("speed.csv")
    assert results["data"]["counts"]["test"] == round(0.2 * (600 - 23))

    # a user's windows with targets: metrics from the file; persistence is exact on a flat series
    x = np.stack([np.full((4, 12, 6), 50.0), np.full((4, 12, 6), 0.5)], axis=-1)  # speed, time
    np.savez(in_tmp / "windows.npz", x=x, y=np.full((4, 12, 6), 50.0))
    main(["test", *BASE, *flags, "--data.root", ".", "--ckpt_path", "best",
          "--data.test_file", "windows.npz"])  # fmt: skip
    from_file = json.loads((run / "test-2/results.json").read_text())["metrics"]
    assert from_file["test/last_value/MAE"] == 0.0
    assert "test/HA/MAE" not in from_file  # no timestamps, no historical average

    main(["predict", *BASE, *flags, "--data.root", ".", "--ckpt_path", "last",
          "--data.predict_file", "speed.csv", "--data.predict_start_time", "2024-03-04 00:00"])  # fmt: skip
    lines = (run / "predict/predictions.csv").read_text().splitlines()
    assert lines[0] == "target_time,horizon_minutes," + ",".join(str(700 + i) for i in range(6))
    assert len(lines) == 1 + 12 * (600 - 12 + 1)
    first = lines[1].split(",")
    assert first[:2] == ["2024-03-04T01:00", "5"] and len(first) == 8


def test_los_angeles_files(in_tmp, shared_data):
    folder = shared_data / "traffic"
    main(["fit", *BASE, "-c", str(CONFIGS / "los.yaml"), "--data.root", str(folder),
          "--trainer.max_steps", "1"])  # fmt: skip
    config = (in_tmp / "runs/traffic/los/fit/config.yaml").read_text()
    assert "los_speed.csv" in config


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO), "MANYHEADS_RUNS": str(cwd / "runs"), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "apps.traffic", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda lines: lines.__setitem__(5, lines[5] + ",1.0"), "speed.csv:6"),
        (
            lambda lines: lines.__setitem__(3, lines[3].replace(lines[3].split(",")[2], "abc", 1)),
            "speed.csv:4",
        ),
    ],
    ids=["ragged-row", "non-numeric"],
)
def test_bad_file_exits_2_naming_file_and_line(tmp_path, mutate, expected):
    flags = write_tgcn(tmp_path)
    lines = (tmp_path / "speed.csv").read_text().splitlines()
    mutate(lines)
    (tmp_path / "speed.csv").write_text("\n".join(lines) + "\n")
    done = run_cli("fit", *BASE, *flags, "--data.root", ".", cwd=tmp_path)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()[-1:]
    assert line.startswith("error:") and expected in line
    assert not (tmp_path / "runs" / "traffic").exists()  # nothing left behind


def test_official_config_rolls_the_forecast_out(in_tmp):
    """The official code's setting end to end: one-step training, a 12-step rolled-out forecast."""
    official = ["-c", str(CONFIGS / "official.yaml")]
    fitted = main(["fit", *BASE[:2], *official, *BASE[2:], "--trainer.max_steps", "2"])
    assert fitted.model.model.time_map.out_features == 1
    main(["test", *BASE[:2], *official, *BASE[2:], "--ckpt_path", "last"])
    results = json.loads((in_tmp / "runs/traffic/tiny/test/results.json").read_text())
    assert results["protocol"]["forecast"] == "rolled out one step at a time"
    assert np.isfinite(results["metrics"]["test/MAE@60min"])
