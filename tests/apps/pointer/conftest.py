"""Shared fixtures of the pointer app's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs" / "pointer"
RELEASED_HULL_5 = REPO.parent / "shared" / "data" / "pointer" / "convex_hull_5_test.txt"


@pytest.fixture
def released_hull_5() -> Path:
    if not RELEASED_HULL_5.exists():
        pytest.skip(f"released file not present at {RELEASED_HULL_5} (../shared/data is optional)")
    return RELEASED_HULL_5
