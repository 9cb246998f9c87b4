"""Shared fixtures: the real sample data folder, seeded random tensors, a temporary working folder
for CLI runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the repository; tests using it skip (saying why) when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"sample data folder {SHARED_DATA} is absent (only present on the dev machines)"
        )
    return SHARED_DATA


@pytest.fixture
def gen() -> torch.Generator:
    """A fresh, seeded generator: random inputs are reproducible but never zeros."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run in ``tmp_path`` with runs under ``tmp_path/runs``; the CLI reads ``args=``, not pytest's
    own command line."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MANYHEADS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(sys, "argv", ["app"])
    return tmp_path
