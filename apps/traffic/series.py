"""The in-memory form every traffic reader returns: sensor readings over time and the road graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.train.errors import InputError


@dataclass
class TrafficSeries:
    """Readings of N sensors at T evenly spaced times, and the directed road graph between them.

    ``values`` [T, N, C] float32 in the file's units (speed in mph or km/h, flow in vehicles per
    interval); missing readings are stored as the file stores them (zeros, in the public files).
    ``adjacency`` [N, N] float32, ``adjacency[i, j]`` = weight of the edge from sensor i to sensor j
    (0 = no edge; it need not be symmetric). ``timestamps`` [T] ``datetime64[ns]`` when the file has
    them; ``coordinates`` [N, 2] (latitude, longitude, or x, y) when known. ``files``: what was read.
    """

    values: np.ndarray
    adjacency: np.ndarray
    sensor_ids: list[str]
    interval_minutes: int = 5
    timestamps: np.ndarray | None = None
    coordinates: np.ndarray | None = None
    files: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        where = ", ".join(str(f) for f in self.files) or "traffic data"
        if self.values.ndim != 3:
            raise InputError(f"{where}: values must be [T, N, C], got shape {self.values.shape}")
        steps, sensors, _ = self.values.shape
        if self.adjacency.shape != (sensors, sensors):
            raise InputError(
                f"{where}: adjacency is {self.adjacency.shape[0]}×{self.adjacency.shape[1]} but "
                f"the readings have {sensors} sensors"
            )
        if len(self.sensor_ids) != sensors:
            raise InputError(f"{where}: {len(self.sensor_ids)} sensor IDs for {sensors} sensors")
        if self.timestamps is not None and len(self.timestamps) != steps:
            raise InputError(f"{where}: {len(self.timestamps)} timestamps for {steps} steps")
        if self.coordinates is not None and self.coordinates.shape != (sensors, 2):
            raise InputError(f"{where}: coordinates must be [{sensors}, 2]")

    @property
    def num_steps(self) -> int:
        return self.values.shape[0]

    @property
    def num_sensors(self) -> int:
        return self.values.shape[1]
