"""``python -m apps.recsys`` end to end at tiny size: the shared MovieLens file with a results file
and top-N predictions for new users, the sampled and temporal protocols, the SASRec baseline, and bad
input (exit 2, one line, nothing left)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from apps.recsys.__main__ import main
from apps.recsys.demo import popularity_metrics

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs" / "recsys"
TINY = Path(__file__).parent / "tiny.yaml"
BASE = ["-c", str(CONFIGS / "default.yaml"), "-c", str(TINY)]


def test_movielens_fit_test_and_predict_for_new_users(in_tmp, shared_data):
    ml100k = ["-c", str(CONFIGS / "default.yaml"), "-c", str(CONFIGS / "ml100k.yaml"),
              "-c", str(TINY), "--data.root", str(shared_data / "recsys")]  # fmt: skip
    main(["fit", *ml100k, "--trainer.max_steps", "2"])
    run = in_tmp / "runs" / "recsys" / "tiny"
    tested = main(["test", *ml100k, "--ckpt_path", "best"])
    results = json.loads((run / "test/results.json").read_text())
    for k in (5, 10, 20):
        assert 0.0 <= results["metrics"][f"test/NDCG@{k}"] <= results["metrics"][f"test/HR@{k}"]
    assert results["data"]["preprocessing"]["users"] == 943
    assert results["data"]["preprocessing"]["items"] == 1682
    assert results["data"]["counts"]["test"] == 943
    assert results["data"]["ranking"].startswith("full")
    assert results["protocol"]["model"] == "MQSA"
    popular = popularity_metrics(tested)  # the demo's baseline, over every unseen item
    assert 0.0 < popular["test/HR@10"] <= popular["test/HR@20"] < 1.0
    assert popular["test/Coverage@10"] <= popular["test/Coverage@20"]

    (in_tmp / "users.txt").write_text("new1 242 302 377\n\nnew2 51 no-such-item\n")
    main(["predict", *ml100k, "--ckpt_path", "last", "--data.predict_file",
          str(in_tmp / "users.txt"), "--model.predict_top", "5"])  # fmt: skip
    lines = (run / "predict/predictions.csv").read_text().splitlines()
    assert lines[0] == "user_id,rank,item_id,score"
    rows = [line.split(",") for line in lines[1:]]
    assert [(r[0], r[1]) for r in rows] == [
        (u, str(k)) for u in ("new1", "new2") for k in range(1, 6)
    ]
    assert not {"242", "302", "377"} & {r[2] for r in rows[:5]}  # seen items are not recommended
    scores = [float(r[3]) for r in rows[:5]]
    assert scores == sorted(scores, reverse=True)


def test_sampled_negatives_are_drawn_once_and_reused(in_tmp):
    sampled = ["--data.ranking", "sampled", "--data.negatives", "20"]
    main(["fit", *BASE, *sampled, "--trainer.max_steps", "2"])
    run = in_tmp / "runs" / "recsys" / "tiny"
    saved = sorted((in_tmp / "cache").glob("negatives_test_*.npy"))
    main(["test", *BASE, *sampled, "--ckpt_path", "last"])
    first = np.load(sorted((in_tmp / "cache").glob("negatives_test_*.npy"))[0])
    tested = main(["test", *BASE, *sampled, "--ckpt_path", "last"])
    again = np.load(sorted((in_tmp / "cache").glob("negatives_test_*.npy"))[0])
    np.testing.assert_array_equal(first, again)
    assert first.shape[1] == 20 and saved  # drawn at fit already
    results = json.loads((run / "test-2/results.json").read_text())
    assert results["data"]["ranking"].startswith("sampled")
    assert "test_negatives" in results["data"]["files"]
    popular = popularity_metrics(tested)  # the demo's baseline, among the same candidates
    assert set(popular) == {k for k in results["metrics"] if k != "test/loss"}
    assert all(
        0.0 <= popular[f"test/NDCG@{k}"] <= popular[f"test/HR@{k}"] <= 1 for k in (5, 10, 20)
    )
    assert popular["test/HR@5"] <= popular["test/HR@10"] <= popular["test/HR@20"]


def test_sasrec_baseline_on_a_temporal_split(in_tmp):
    main(["fit", *BASE, "-c", str(CONFIGS / "sasrec.yaml"), "--data.protocol", "temporal",
          "--trainer.max_steps", "2"])  # fmt: skip
    run = in_tmp / "runs" / "recsys" / "sasrec"
    main(["test", *BASE, "-c", str(CONFIGS / "sasrec.yaml"), "--data.protocol", "temporal",
          "--ckpt_path", "last"])  # fmt: skip
    results = json.loads((run / "test/results.json").read_text())
    assert results["protocol"]["model"] == "SASRec"
    assert results["protocol"]["loss"] == "sampled_bce"
    assert results["data"]["split"] == "temporal"
    assert np.isfinite(results["metrics"]["test/NDCG@10"])


def test_bad_file_exits_2_with_one_line_and_leaves_nothing(in_tmp):
    (in_tmp / "bad.inter").write_text("user_id:token\trating:float\n1\t3\n")
    done = subprocess.run(
        [sys.executable, "-m", "apps.recsys", "fit", *BASE, "--data.format", "atomic",
         "--data.interactions_file", str(in_tmp / "bad.inter")],
        capture_output=True, text=True, cwd=in_tmp, timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()[-1:]
    assert line.startswith("error:") and "bad.inter:1" in line and "item_id" in line
    assert not (in_tmp / "runs").exists()


def test_a_file_without_its_format_is_refused(in_tmp, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["fit", *BASE, "--data.interactions_file", "ratings.dat"])
    assert stopped.value.code == 2
    assert "needs --data.format" in capsys.readouterr().err
