"""``python -m apps.pointcloud`` end to end at tiny size: synthetic scenes with the attention
inspector, the six real KITTI frames, predicting on a cloud of one's own in KITTI label format, and
bad input (exit 2, one line, no run folder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from apps.pointcloud.__main__ import main
from apps.pointcloud.readers import read_kitti_labels
from apps.pointcloud.simulate import kitti_calib

REPO = Path(__file__).resolve().parents[3]
TINY = Path(__file__).parent / "tiny.yaml"
BASE = ["-c", str(REPO / "configs" / "pointcloud" / "default.yaml"), "-c", str(TINY)]


@pytest.mark.parametrize("backbone", ["dsvt", "scatterformer"])
def test_synthetic_fit_test_with_inspector(in_tmp, backbone):
    overlay = ["-c", str(REPO / "configs" / "pointcloud" / "scatterformer.yaml")]
    base = [*BASE[:2], *(overlay if backbone == "scatterformer" else []), *BASE[2:]]
    main(["fit", *base])
    run = in_tmp / "runs" / "pointcloud" / "tiny"
    inspector = ["--trainer.callbacks+=core.inspect.AttentionInspector",
                 "--trainer.callbacks.init_args.weight_batches", "1"]  # fmt: skip
    main(["test", *base, "--ckpt_path", "best", *inspector])
    attention = run / "test" / "attention" / "test"
    assert (attention / "set_attention.png").is_file()
    assert (attention / "entropy_by_set_size.png").is_file()
    statistics = (attention / "statistics.csv").read_text()
    if backbone == "dsvt":
        assert "backbone.stages.0.1.layers.1.attn" in statistics  # shifted block, x-axis sets
    else:  # linear attention is not recorded; its pillar pooling is
        assert "backbone.pool.attn" in statistics
    results = json.loads((run / "test" / "results.json").read_text())
    metrics = results["metrics"]
    assert 0.0 <= metrics["test/Car_BEV_AP"] <= 1.0 and 0.0 <= metrics["test/Car_3D_AP"] <= 1.0
    assert results["data"]["counts"]["test"] == 4
    assert results["protocol"]["difficulty"] == "moderate"
    assert list((run / "test" / "figures").glob("test_bev_step*.png"))


def test_kitti_frames_train_test_and_predict_labels(in_tmp, shared_data):
    kitti = shared_data / "pointcloud" / "kitti"
    files = ["--data.train_file", str(kitti / "ImageSets" / "train.txt"),
             "--data.val_file", str(kitti / "ImageSets" / "val.txt")]  # fmt: skip
    overlay = ["-c", str(REPO / "configs" / "pointcloud" / "kitti.yaml")]
    fitted = main(["fit", *BASE, *overlay, *files])
    assert fitted.datamodule.grid.shape == (1, 248, 216)  # KITTI's range in 0.32 m pillars
    main(["test", *BASE, *overlay, *files, "--ckpt_path", "last"])
    run = in_tmp / "runs" / "pointcloud" / "kitti"  # named by the last config
    results = json.loads((run / "test" / "results.json").read_text())
    assert results["data"]["files"]["test"]["path"].endswith("val.txt")
    assert results["data"]["counts"]["test"] == 6
    main(["predict", *BASE, *overlay, *files, "--ckpt_path", "last"])
    labels = sorted((run / "predict" / "kitti_labels").glob("*.txt"))
    assert [p.stem for p in labels] == [f"{i:06d}" for i in range(6)]
    for path in labels:  # the devkit's result format reads back (16 fields with the score)
        read_kitti_labels(path, kitti_calib())


def test_predict_on_a_cloud_of_ones_own(in_tmp, caplog):
    main(["fit", *BASE])
    rng = np.random.default_rng(0)
    ahead = rng.uniform([2, -8, -1.7, 0], [20, 8, 0.5, 1], size=(3000, 4))
    ahead.astype(np.float32).tofile(in_tmp / "mine.bin")
    behind = ahead * np.array([-1, 1, 1, 1])  # behind the sensor: outside point_range
    behind.astype(np.float32).tofile(in_tmp / "reversed.bin")
    main(["predict", *BASE, "--data.predict_file", ".", "--ckpt_path", "last"])
    folder = in_tmp / "runs" / "pointcloud" / "tiny" / "predict"
    lines = (folder / "predictions.txt").read_text().splitlines()
    assert {line.split()[0] for line in lines} <= {"mine.bin", "reversed.bin", "#"}
    assert any("reversed.bin" in line for line in lines)
    assert (folder / "predicted_bev.png").is_file()
    assert "only 0% of the points lie inside point_range" in caplog.text


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("cloud.bin", b"\x00" * 20, "not a multiple of the 16-byte record"),
        ("list.txt", b"000000\n", "000000"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_run(in_tmp, capsys, name, content, message):
    (in_tmp / name).write_bytes(content)
    if name.endswith(".bin"):
        args = ["predict", *BASE, "--data.predict_file", name]
    else:
        (in_tmp / "ImageSets").mkdir()
        (in_tmp / "ImageSets" / name).write_bytes(content)
        listed = str(in_tmp / "ImageSets" / name)
        args = ["fit", *BASE, "--data.train_file", listed, "--data.val_file", listed]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not (in_tmp / "runs" / "pointcloud").exists()
