"""Every shipped config parses and instantiates (model, data, trainer) through its app's CLI; the
non-default configs are overlays on ``default.yaml`` that state only what differs."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.train.demo import discover_apps

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CASES = [
    (app, path)
    for app in discover_apps()
    for path in sorted((REPO / "configs" / app).glob("*.yaml"))
]


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; class_path/init_args blocks stay whole (an overlay
    replaces an optimiser as a unit)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and "class_path" not in value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def data_root_args(app: str, path: Path) -> list[str]:
    """For a config that reads real files (``data.*_file``): ``--data.root`` at ``data/<app>/`` when
    they are there (the test runs in a scratch folder, so the default relative root would miss
    them), else at the sample copies in ``../shared/data/<app>/``; skip when neither has them."""
    config = flatten(yaml.safe_load(path.read_text()) or {})
    names = [v for k, v in config.items() if k.startswith("data.") and k.endswith("_file") and v]
    if not names:
        return []
    if all((REPO / "data" / app / name).is_file() for name in names):
        return ["--data.root", str(REPO / "data" / app)]
    shared = SHARED_DATA / app
    if not all((shared / name).is_file() for name in names):
        pytest.skip(f"{path.name} reads {names}: not in data/{app}/ nor in {shared}")
    return ["--data.root", str(shared)]


@pytest.mark.parametrize(("app", "path"), CASES, ids=[f"{a}/{p.name}" for a, p in CASES])
def test_config_instantiates(app, path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MANYHEADS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(sys, "argv", ["app"])
    main = importlib.import_module(f"apps.{app}.__main__").main
    default = REPO / "configs" / app / "default.yaml"
    layers = [default] if path == default else [default, path]
    args = [arg for layer in layers for arg in ("-c", str(layer))]
    args += data_root_args(app, path)
    cli = main([*args, "--trainer.enable_progress_bar", "false"], run=False)
    assert cli.model is not None and cli.datamodule is not None and cli.trainer is not None
    assert cli.run_dir().name == path.stem
    # a fraction of an epoch keeps working when a user shortens epochs (--trainer.limit_train_batches)
    assert isinstance(cli.trainer.val_check_interval, float)


@pytest.mark.parametrize(("app", "path"), CASES, ids=[f"{a}/{p.name}" for a, p in CASES])
def test_overlays_state_only_what_differs(app, path):
    default = flatten(yaml.safe_load((REPO / "configs" / app / "default.yaml").read_text()))
    if path.name == "default.yaml":
        return
    overlay = flatten(yaml.safe_load(path.read_text()) or {})
    assert overlay, f"{path.name} sets nothing"
    restated = {key for key, value in overlay.items() if default.get(key, object()) == value}
    assert not restated, f"{path.name} restates default.yaml's {sorted(restated)}"
    assert path.read_text().startswith("#"), f"{path.name} needs a header comment"
