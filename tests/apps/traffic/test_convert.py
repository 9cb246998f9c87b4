"""``python -m apps.traffic.convert``: any supported format to our own .npz, read back exactly, and
bad input exits 2 with one line naming the file and leaves no output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from apps.traffic.convert import main
from apps.traffic.npzfiles import read_npz, write_npz
from apps.traffic.readers import read_tgcn
from tests.apps.traffic.samples import SPEED, tgcn_files, write

REPO = Path(__file__).resolve().parents[3]


def test_tgcn_pair_with_a_start_time_round_trips(tmp_path, capsys):
    speed, adj = tgcn_files(tmp_path, speed=SPEED + "0,7,8\n")  # one missing reading of nine
    out = tmp_path / "out" / "los.npz"
    argv = ["--format", "tgcn", "--values", str(speed), "--graph", str(adj)]
    argv += ["--start-time", "2012-03-01 00:00", "--interval-minutes", "15", "--out", str(out)]
    assert main(argv) == 0
    assert capsys.readouterr().out == (
        f"3 sensors, 3 steps, 1 channel(s), 11.11% missing (readings == 0) → {out}\n"
    )
    series = read_npz(out)
    assert series.values.shape == (3, 3, 1)
    assert series.values[..., 0].tolist() == [[1, 2, 3], [4, 5, 6], [0, 7, 8]]
    assert series.sensor_ids == ["a", "b", "c"]
    assert series.adjacency.tolist() == [[1, 0.5, 0], [0.5, 1, 0], [0, 0.25, 1]]
    assert series.interval_minutes == 15
    assert (
        series.timestamps.tolist()
        == (
            np.array(["2012-03-01T00:00", "2012-03-01T00:15", "2012-03-01T00:30"], "datetime64[ns]")
        ).tolist()
    )
    assert sorted(p.name for p in out.parent.iterdir()) == ["los.npz"]  # no temporary left


def test_without_a_start_time_there_are_no_timestamps(tmp_path, capsys):
    speed, adj = tgcn_files(tmp_path)
    out = tmp_path / "los.npz"
    argv = ["--format", "tgcn", "--values", str(speed), "--graph", str(adj), "--out", str(out)]
    assert main(argv) == 0
    series = read_npz(out)
    assert series.timestamps is None and series.interval_minutes == 5
    assert "0.00% missing" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            lambda speed, adj: write(speed.parent, speed.name, "a,b,c\n1,2,3\n4,x,6\n"),
            "los_speed.csv:3: column 2 ('b'): 'x' is not a number",
        ),
        (lambda speed, adj: adj.unlink(), "los_adj.csv: no such file"),
    ],
)
def test_bad_input_exits_2_naming_the_file_and_leaves_no_output(tmp_path, capsys, bad, message):
    speed, adj = tgcn_files(tmp_path)
    bad(speed, adj)
    out = tmp_path / "los.npz"
    argv = ["--format", "tgcn", "--values", str(speed), "--graph", str(adj), "--out", str(out)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and message in captured.err
    assert len(captured.err.splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_refuses_a_start_time_for_files_with_their_own_or_an_unreadable_one(tmp_path, capsys):
    series = read_tgcn(*tgcn_files(tmp_path))
    series.timestamps = np.array(["2020-01-01", "2020-01-02"], "datetime64[ns]")
    own = write_npz(series, tmp_path / "own.npz")
    out = tmp_path / "out.npz"
    base = ["--format", "npz", "--values", str(own), "--out", str(out)]
    assert main([*base, "--start-time", "2012-03-01 00:00"]) == 2
    assert "own.npz: has its own timestamps; give no --start-time" in capsys.readouterr().err
    assert main([*base, "--start-time", "yesterday noon"]) == 2
    assert "--start-time 'yesterday noon': not a date and time" in capsys.readouterr().err
    assert not out.exists()


def test_runs_as_a_module(tmp_path):
    speed, _ = tgcn_files(tmp_path)
    out = tmp_path / "los.npz"
    argv = ["--format", "tgcn", "--values", str(speed), "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "apps.traffic.convert", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().endswith("format 'tgcn' needs a graph file (like los_adj.csv)")
    assert not out.exists()
