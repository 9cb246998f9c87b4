"""``python -m apps.wsi`` end to end at tiny size: the ``preprocess`` subcommand, slides from a folder
with a labels CSV (a corrupt slide, a blank slide and an unlabelled slide are counted while the others
train), predict on new slides with heatmaps, precomputed CLAM features, and bad input (exit 2, one
line, nothing left)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from apps.wsi.__main__ import main
from apps.wsi.demo import mean_pooling_metrics
from apps.wsi.pyramid import write_pyramidal_tiff

REPO = Path(__file__).resolve().parents[3]
TINY = Path(__file__).parent / "tiny.yaml"
BASE = ["-c", str(REPO / "configs" / "wsi" / "default.yaml"), "-c", str(TINY)]


def test_preprocess_subcommand_writes_features_and_no_run(in_tmp, capsys):
    data = main(["preprocess", *BASE])
    files = sorted((data.feature_folder() / "h5_files").glob("*.h5"))
    assert len(files) == 10
    assert f"features in {data.feature_folder()}" in capsys.readouterr().out
    assert not (in_tmp / "runs").exists()
    with h5py.File(files[0]) as handle:
        assert handle["features"].shape[1] == data.feature_dim
        assert handle["coords"].shape == (handle["features"].shape[0], 2)


def make_slide_folder(root: Path) -> Path:
    """Slides of the synthetic set copied to a folder, plus a truncated, a blank and an unlabelled
    slide, and a labels CSV naming all but the unlabelled one."""
    main(["preprocess", *BASE])  # generates cache/synthetic
    synthetic = root / "cache" / "synthetic"
    folder = root / "slides"
    folder.mkdir()
    with (synthetic / "labels.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        shutil.copy(synthetic / f"{row['slide_id']}.tiff", folder)
    first = (folder / f"{rows[0]['slide_id']}.tiff").read_bytes()
    (folder / "truncated.tiff").write_bytes(first[:2048])
    shutil.copy(folder / f"{rows[1]['slide_id']}.tiff", folder / "unlabelled.tiff")
    write_pyramidal_tiff(folder / "blank.tiff", np.full((768, 1024, 3), 240, np.uint8), 0.5)
    lines = ["case_id,slide_id,label"] + [f"c{i},{r['slide_id']},{r['label']}"
                                          for i, r in enumerate(rows)]  # fmt: skip
    lines += ["cx,truncated,tumour", "cy,blank,normal"]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_slides_folder_counts_bad_slides_and_trains_on_the_rest(in_tmp, caplog):
    folder = make_slide_folder(in_tmp)
    slides = ["--data.source", "slides", "--data.slides_dir", str(folder),
              "--data.labels_file", str(in_tmp / "labels.csv")]  # fmt: skip
    fitted = main(["fit", *BASE, *slides, "--trainer.max_steps", "2"])
    assert fitted.trainer.global_step == 2
    log = caplog.text
    assert "2 failed" in log and "truncated.tiff" in log and "blank.tiff" in log
    assert "1 slides of" in log and "unlabelled" in log
    assert "2 labelled slides have no features" in log
    assert sum(len(fitted.datamodule.datasets[s]) for s in ("train", "val", "test")) == 10

    run = in_tmp / "runs" / "wsi" / "tiny"
    inspector = ["--trainer.callbacks+=core.inspect.AttentionInspector",
                 "--trainer.callbacks.init_args.weight_batches", "1"]  # fmt: skip
    tested = main(["test", *BASE, *slides, "--ckpt_path", "best", *inspector])
    attention = run / "test/attention/test"
    assert (attention / "branch_heatmaps.png").is_file()
    with (attention / "stkim_effect.csv").open() as handle:
        effect = list(csv.DictReader(handle))
    assert [int(row["branch"]) for row in effect] == [1, 2, 3]  # tiny.yaml: 3 branches
    for row in effect:
        assert 0.0 <= float(row["top_k_mass_after"]) <= 1.0
        assert 0.0 <= float(row["entropy_before"]) <= 1.0 + 1e-9
    results = json.loads((run / "test/results.json").read_text())
    assert results["data"]["split"]["kind"] == "holdout"
    assert {"test/AUROC", "test/F1", "test/accuracy"} <= set(results["metrics"])
    assert "test/tumour_r_precision" not in results["metrics"]  # no tile truth for real slides
    baseline = mean_pooling_metrics(tested)
    assert 0.0 <= baseline["test/accuracy"] <= 1.0

    new = in_tmp / "new"
    new.mkdir()
    shutil.copy(folder / "unlabelled.tiff", new / "case_a.tiff")
    main(["predict", *BASE, *slides, "--ckpt_path", "last", "--data.predict_slides", str(new)])
    lines = (run / "predict/predictions.csv").read_text().splitlines()
    assert lines[0] == "slide_id,predicted,p_normal,p_tumour,label,tiles,heatmap"
    cells = lines[1].split(",")
    assert cells[0] == "case_a" and abs(float(cells[2]) + float(cells[3]) - 1) < 1e-5
    assert Path(cells[6]).is_file()


def write_clam(folder: Path, n_slides: int, dim: int = 24) -> None:
    rng = np.random.default_rng(0)
    (folder / "h5_files").mkdir(parents=True)
    rows = ["case_id,slide_id,label"]
    for i in range(n_slides):
        label = "tumor_tissue" if i % 2 else "normal_tissue"
        n = int(rng.integers(5, 30))
        with h5py.File(folder / "h5_files" / f"s{i}.h5", "w") as handle:
            handle["features"] = rng.normal(size=(n, dim)).astype(np.float32) + (i % 2)
            handle["coords"] = rng.integers(0, 50, size=(n, 2)) * 256
        rows.append(f"c{i},s{i},{label}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")


def test_clam_features_with_cross_validation(in_tmp):
    write_clam(in_tmp / "clam", 10)
    clam = ["--data.source", "clam", "--data.features_dir", str(in_tmp / "clam"),
            "--data.labels_file", str(in_tmp / "clam" / "labels.csv"),
            "--data.folds", "5", "--data.fold", "1"]  # fmt: skip
    fitted = main(["fit", *BASE, *clam, "--trainer.max_steps", "2"])
    assert fitted.model.model.reduce.in_features == 24
    assert fitted.model.class_names == ["normal_tissue", "tumor_tissue"]
    main(["test", *BASE, *clam, "--ckpt_path", "last"])
    results = json.loads((in_tmp / "runs/wsi/tiny/test/results.json").read_text())
    split = results["data"]["split"]
    assert (split["kind"], split["folds"], split["fold"]) == ("cross_validation", 5, 1)
    assert split["counts"]["test"] == 2


@pytest.mark.parametrize(
    "args,message",
    [
        (["--data.source", "clam", "--data.features_dir", "nowhere", "--data.labels_file",
          "labels.csv"], "labels.csv"),
        (["--data.source", "slides", "--data.labels_file", "good.csv"], "slides_dir"),
        (["--data.source", "acmil_h5"], "h5_file"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line_and_no_run(in_tmp, capsys, args, message):
    (in_tmp / "labels.csv").write_text("case_id,slide_id\nc0,s0\n")  # no label column
    (in_tmp / "good.csv").write_text("case_id,slide_id,label\nc0,s0,normal\n")
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *BASE, *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not (in_tmp / "runs" / "wsi").exists()
