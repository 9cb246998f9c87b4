"""Tiny files of each public traffic format, written into a test's folder, for the reader and
converter tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd

SPEED = "a,b,c\n1,2,3\n4,5,6\n"
ADJ = "1,0.5,0\n0.5,1,0\n0,0.25,1\n"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def tgcn_files(folder: Path, speed: str = SPEED, adj: str = ADJ) -> tuple[Path, Path]:
    return write(folder, "los_speed.csv", speed), write(folder, "los_adj.csv", adj)


H5_IDS = ["773869", "767541", "767542"]
SPEEDS = [[60.0, 61.0, 62.0], [0.0, 63.5, 64.0], [65.0, 66.0, 67.0], [68.0, 69.0, 70.0]]
TIMES = pd.date_range("2012-03-01 00:00", periods=4, freq="5min")
# the pickle lists the sensors in another order, plus one without readings
PICKLE_IDS = ["767542", "773869", "767541", "999999"]
PICKLE_ADJ = [
    [1.0, 0.2, 0.3, 0.4],
    [0.5, 1.0, 0.6, 0.7],
    [0.8, 0.9, 1.0, 0.15],
    [0.25, 0.35, 0.45, 1.0],
]
# PICKLE_ADJ re-indexed to the h5's order (773869 = 1, 767541 = 2, 767542 = 0 in the pickle)
ALIGNED_ADJ = [[1.0, 0.6, 0.5], [0.9, 1.0, 0.8], [0.2, 0.3, 1.0]]
LOCATIONS = (
    "index,sensor_id,latitude,longitude\n"
    "0,767542,34.1,-118.1\n1,773869,34.2,-118.2\n2,767541,34.3,-118.3\n"
)


def write_h5(folder: Path, speeds=SPEEDS, columns=H5_IDS, index=TIMES, key="df") -> Path:
    path = folder / "metr-la.h5"
    pd.DataFrame(np.array(speeds), index=index, columns=columns).to_hdf(path, key=key)
    return path


def write_pickle(folder: Path, content=None) -> Path:
    if content is None:
        index = {sensor: i for i, sensor in enumerate(PICKLE_IDS)}
        content = [PICKLE_IDS, index, np.array(PICKLE_ADJ, dtype=np.float32)]
    path = folder / "adj_mx.pkl"
    with path.open("wb") as handle:
        pickle.dump(content, handle, protocol=2)
    return path
