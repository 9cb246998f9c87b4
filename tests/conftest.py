"""Shared fixtures: the real sample data folder and seeded random tensors."""

from __future__ import annotations

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
