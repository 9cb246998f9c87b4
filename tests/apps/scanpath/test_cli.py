"""``python -m apps.scanpath`` end to end at tiny size: the simulator with the attention inspector and
the baselines, the Amazon sample, predicting on a picture of one's own, and bad input (exit 2, one
line, no run folder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from apps.scanpath.__main__ import main
from apps.scanpath.demo import similarity_metrics

REPO = Path(__file__).resolve().parents[3]
TINY = Path(__file__).parent / "tiny.yaml"
BASE = ["-c", str(REPO / "configs" / "scanpath" / "default.yaml"), "-c", str(TINY)]
AMAZON = ["-c", str(REPO / "configs" / "scanpath" / "amazon.yaml")]


def test_simulated_fit_test_with_inspector_and_baselines(in_tmp):
    main(["fit", *BASE])
    run = in_tmp / "runs" / "scanpath" / "tiny"
    inspector = ["--trainer.callbacks+=core.inspect.AttentionInspector",
                 "--trainer.callbacks.init_args.weight_batches", "1"]  # fmt: skip
    tested = main(["test", *BASE, "--ckpt_path", "best", *inspector])
    attention = run / "test" / "attention" / "test"
    assert (attention / "cross_attention.png").is_file()
    assert (attention / "encoder_distance.png").is_file()
    results = json.loads((run / "test" / "results.json").read_text())
    metrics = results["metrics"]
    for prefix in ("test", "test/humans", "test/center_bias", "test/target_similarity"):
        assert 0.0 <= metrics[f"{prefix}/SS"] <= 1.0
    assert "test/humans/human_found" not in metrics  # the humans' statistics are test/human_*
    assert 0.0 <= metrics["test/human_found"] <= 1.0
    assert results["data"]["counts"]["test"] == 4  # tiny.yaml: 40 displays, 10 % each
    baseline = similarity_metrics(tested)
    assert baseline["test/SS"] == metrics["test/target_similarity/SS"]
    assert list((run / "test" / "figures").glob("test_scanpaths_step*.png"))


def test_sampled_decoding_is_reproducible(in_tmp):
    main(["fit", *BASE])
    sampled = ["--model.decoding", "sampled", "--model.samples", "3", "--ckpt_path", "last"]
    runs = [main(["test", *BASE, *sampled]) for _ in range(2)]
    first, second = (r.trainer.callback_metrics for r in runs)
    assert float(first["test/SS"]) == float(second["test/SS"])
    (results, *_) = (in_tmp / "runs" / "scanpath" / "tiny").glob("test*/results.json")
    protocol = json.loads(results.read_text())
    assert "sampled, 3 per display, seed 0" in protocol["protocol"]["decoding"]


def test_amazon_sample_trains_and_tests(in_tmp, shared_data):
    root = ["--data.root", str(shared_data / "scanpath")]
    fitted = main(["fit", *BASE, *AMAZON, *root])
    data = fitted.datamodule
    assert data.grid == (6, 14) and fitted.model.model.grid == (6, 14)
    assert {len(data.splits[s]) for s in ("val", "test")} == {10} and len(
        data.splits["train"]
    ) == 80
    tested = main(["test", *BASE, *AMAZON, *root, "--ckpt_path", "last"])
    assert tested.datamodule.files["scanpaths"].name == "Amazon.json"


def test_predict_on_a_picture_and_boxes_of_ones_own(in_tmp):
    main(["fit", *BASE])
    picture = np.zeros((120, 200, 3), np.uint8)
    boxes = [[10, 10, 40, 40], [80, 20, 40, 40], [140, 60, 40, 40], [20, 70, 40, 40]]
    for i, (x, y, w, h) in enumerate(boxes):
        picture[y : y + h, x : x + w] = (60 * i, 255 - 50 * i, 120)
    Image.fromarray(picture).save(in_tmp / "shelf.png")
    (in_tmp / "boxes.json").write_text(json.dumps({"boxes": boxes, "target": 2}))
    own = ["--data.predict_image", "shelf.png", "--data.predict_boxes_file", "boxes.json"]
    main(["predict", *BASE, *own, "--ckpt_path", "last"])
    folder = in_tmp / "runs" / "scanpath" / "tiny" / "predict"
    (line,) = (folder / "predictions.jsonl").read_text().splitlines()
    prediction = json.loads(line)
    assert prediction["name"] == "shelf.png"
    (path,) = prediction["scanpaths"]
    assert path["objects"] and all(0 <= i < 4 for i in path["objects"])
    assert (folder / "predicted_scanpaths.png").is_file()


@pytest.mark.parametrize(
    "files,args,message",
    [
        ({"bad.json": "{not json"}, ["--data.amazon_file", "bad.json"], "bad.json"),
        ({}, ["--data.fixations_file", "fixations.json"], "objects_file"),
        ({"boxes.json": '{"boxes": []}'}, ["--data.predict_boxes_file", "boxes.json"],
         "predict_image"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line_and_no_run(in_tmp, capsys, files, args, message):
    for name, text in files.items():
        (in_tmp / name).write_text(text)
    command = "predict" if "--data.predict_boxes_file" in args else "fit"
    with pytest.raises(SystemExit) as exit_:
        main([command, *BASE, *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not (in_tmp / "runs" / "scanpath").exists()


def test_fine_tuning_starts_from_another_runs_weights(in_tmp, capsys):
    main(["fit", *BASE])
    checkpoint = in_tmp / "runs" / "scanpath" / "tiny" / "fit" / "checkpoints" / "last.ckpt"
    start = ["--model.init_from", str(checkpoint)]
    tuned = main([*BASE, *start, "--data.grid", "[4, 6]"], run=False)  # another grid
    trained = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    for name, value in tuned.model.model.state_dict().items():
        torch.testing.assert_close(value, trained[f"model.{name}"])
    assert tuned.model.model.grid == (4, 6)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *BASE, *start, "--model.net.d_model", "64"])
    assert exit_.value.code == 2
    assert "not an OAT of this configuration" in capsys.readouterr().err
