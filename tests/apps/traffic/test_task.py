"""TrafficTask helpers: sensor coordinates in km for the inspector's distance statistic."""

from __future__ import annotations

import numpy as np
import pytest

from apps.traffic.task import kilometres


def test_kilometres_between_coordinates():
    points = np.array([[34.0, -118.0], [34.1, -118.0], [34.0, -117.9]])  # 0.1° north, 0.1° east
    km = kilometres(points)
    assert np.linalg.norm(km[1] - km[0]) == pytest.approx(11.12, rel=1e-3)
    east = 11.12 * np.cos(np.radians(points[:, 0].mean()))
    assert np.linalg.norm(km[2] - km[0]) == pytest.approx(east, rel=1e-3)
