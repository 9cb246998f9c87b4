"""``python -m apps.pointer`` on files of the field: released test files, TSPLIB instances, points."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from apps.pointer.__main__ import main

from .conftest import CONFIGS

TINY = Path(__file__).parent / "tiny.yaml"


@pytest.fixture
def trained(tmp_path, monkeypatch) -> list[str]:
    """A tiny TSP model fitted in ``tmp_path``; returns the config flags that name its run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MANYHEADS_RUNS", raising=False)
    monkeypatch.setattr(sys, "argv", ["pointer"])  # the CLI reads args=, not pytest's flags
    configs = ["-c", str(CONFIGS / "default.yaml"), "-c", str(CONFIGS / "tsp.yaml"),
               "-c", str(TINY), "--data.train_n", "[5, 6]", "--data.val_n", "[5, 6]"]  # fmt: skip
    main(["fit", *configs])
    return configs


def results(tmp_path: Path, folder: str) -> dict:
    return json.loads((tmp_path / "runs/pointer/tiny" / folder / "results.json").read_text())


def test_released_tsp_targets_in_either_direction_give_the_same_loss(trained, tmp_path):
    rng = np.random.default_rng(0)
    lines = {"forward": [], "backward": []}
    for _ in range(4):
        points = rng.random((6, 2))
        tour = np.array([1, 3, 5, 2, 6, 4])
        coords = " ".join(f"{v:.6f}" for v in points.ravel())
        lines["forward"].append(f"{coords} output {' '.join(map(str, [*tour, 1]))}")
        lines["backward"].append(f"{coords} output {' '.join(map(str, [1, *tour[::-1]]))}")
    losses = {}
    for direction, text in lines.items():
        (tmp_path / f"{direction}.txt").write_text("\n".join(text) + "\n")
        main(["test", *trained, "--ckpt_path", "best", "--data.test_file", f"{direction}.txt"])
        folder = "test" if direction == "forward" else "test-2"
        losses[direction] = results(tmp_path, folder)["metrics"]["test/loss"]
    assert losses["forward"] == pytest.approx(losses["backward"], rel=1e-6)


def test_tsplib_gap_is_measured_against_the_optimal_tour(trained, tmp_path):
    """A rectangle with a roof, whose optimum is in ``.opt.tour``: 30 + 40 + nint(√250) + nint(√250)
    + 40 = 142. The reference must be that tour's length, not a solver's tour."""
    nodes = [(0, 0), (30, 0), (30, 40), (0, 40), (15, 45)]
    body = "\n".join(f"{i} {x} {y}" for i, (x, y) in enumerate(nodes, start=1))
    (tmp_path / "rect5.tsp").write_text(
        f"NAME: rect5\nTYPE: TSP\nDIMENSION: 5\nEDGE_WEIGHT_TYPE: EUC_2D\nNODE_COORD_SECTION\n{body}\nEOF\n"
    )
    (tmp_path / "rect5.opt.tour").write_text(
        "NAME: rect5.opt.tour\nTYPE: TOUR\nDIMENSION: 5\nTOUR_SECTION\n1 2 3 5 4\n-1\nEOF\n"
    )
    main(["test", *trained, "--ckpt_path", "best", "--data.test_file", "rect5.tsp"])
    found = results(tmp_path, "test")
    metrics = found["metrics"]
    assert metrics["test/tsplib_reference_length"] == 142
    assert metrics["test/tsplib_gap_pct"] == pytest.approx(
        100 * (metrics["test/tsplib_length"] / 142 - 1)
    )
    assert found["protocol"]["tsplib gap against"] == ["optimal tour file"]
    assert Path(found["data"]["files"]["test"]["path"]).name == "rect5.tsp"


def test_predict_on_a_points_file_writes_the_released_format(trained, tmp_path):
    points = np.random.default_rng(1).random((7, 2))
    (tmp_path / "points.txt").write_text("\n".join(f"{x} {y}" for x, y in points))
    main(["predict", *trained, "--data.predict_file", "points.txt", "--ckpt_path", "last"])
    written = (tmp_path / "runs/pointer/tiny/predict/predictions.txt").read_text().splitlines()
    assert len(written) == 1
    coords, order = written[0].split("output")
    np.testing.assert_allclose(np.array(coords.split(), float).reshape(-1, 2), points, atol=1e-6)
    tour = [int(i) for i in order.split()]
    assert tour[0] == tour[-1] and sorted(tour[:-1]) == list(range(1, 8))
