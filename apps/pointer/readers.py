"""Readers for the point files of the field, validated line by line.

* The released Ptr-Net files: one instance a line, ``x1 y1 x2 y2 … output i1 i2 …`` (1-based indices;
  convex hull, Delaunay and TSP variants differ only in the output sequence).
* Plain point files: one ``x y`` a line, the whole file one instance (for ``predict``).
* TSPLIB ``.tsp`` files with ``EDGE_WEIGHT_TYPE: EUC_2D``.

Bad input raises ``ValueError`` naming the file and line; nothing is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# points [n, 2] and the 1-based output sequence [T] (None when the file has none)
Instance = tuple[np.ndarray, np.ndarray | None]


def check_points(points: np.ndarray, where: str) -> None:
    """Refuse NaN/inf coordinates, fewer than 3 points and duplicate points, naming ``where``."""
    if not np.isfinite(points).all():
        raise ValueError(f"{where}: NaN or infinite coordinate")
    if len(points) < 3:
        raise ValueError(f"{where}: {len(points)} points, need at least 3")
    unique = np.unique(points, axis=0)
    if len(unique) != len(points):
        raise ValueError(f"{where}: {len(points) - len(unique)} duplicate point(s)")


def _floats(tokens: list[str], where: str) -> np.ndarray:
    try:
        return np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"{where}: not a number ({error})") from None


def parse_released_line(line: str, where: str) -> Instance:
    """One line of a released file → (points [n, 2], output [T] 1-based)."""
    if "output" not in line.split():
        raise ValueError(f"{where}: missing the 'output' separator")
    left, right = line.split("output", 1)
    coords = _floats(left.split(), where)
    if len(coords) % 2:
        raise ValueError(f"{where}: odd number of coordinates ({len(coords)})")
    points = coords.reshape(-1, 2)
    check_points(points, where)
    try:
        output = np.array([int(t) for t in right.split()], dtype=np.int64)
    except ValueError as error:
        raise ValueError(f"{where}: output index is not an integer ({error})") from None
    if output.size == 0:
        raise ValueError(f"{where}: empty output sequence")
    if output.min() < 1 or output.max() > len(points):
        raise ValueError(
            f"{where}: output index out of range 1..{len(points)} "
            f"(got {output.min()}..{output.max()})"
        )
    return points, output


def read_released_file(path: str | Path) -> list[Instance]:
    """All instances of a released ``x y … output i …`` file (blank lines skipped, nothing else)."""
    path = Path(path)
    instances = []
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                instances.append(parse_released_line(line, f"{path}:{number}"))
    if not instances:
        raise ValueError(f"{path}: no instances")
    return instances


def read_points_file(path: str | Path) -> list[Instance]:
    """Points to predict on: a released file (its outputs kept as targets) or one ``x y`` a line."""
    path = Path(path)
    lines = path.read_text().splitlines()
    if any("output" in line for line in lines):
        return read_released_file(path)
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        values = _floats(line.split(), f"{path}:{number}")
        if len(values) != 2:
            raise ValueError(f"{path}:{number}: expected 'x y', got {len(values)} values")
        if not np.isfinite(values).all():
            raise ValueError(f"{path}:{number}: NaN or infinite coordinate")
        rows.append(values)
    points = np.array(rows).reshape(-1, 2)
    check_points(points, str(path))
    return [(points, None)]


@dataclass
class TsplibInstance:
    """A TSPLIB EUC_2D instance: original coordinates and their map to the unit square."""

    name: str
    coords: np.ndarray  # [n, 2] in the instance's units
    offset: np.ndarray  # [2]
    scale: float  # unit = (coords - offset) / scale

    @property
    def unit_points(self) -> np.ndarray:
        """Coordinates in [0, 1]² (aspect ratio kept), the model's input [n, 2]."""
        return (self.coords - self.offset) / self.scale

    def tour_length(self, tour: np.ndarray) -> int:
        """TSPLIB length of a closed 1-based tour: sum of nint(Euclidean distance) per edge."""
        xy = self.coords[np.asarray(tour) - 1]
        edges = np.linalg.norm(np.diff(xy, axis=0), axis=1)
        return int(np.floor(edges + 0.5).sum())


def read_tsplib(path: str | Path) -> TsplibInstance:
    """Read a TSPLIB ``.tsp`` file (``EDGE_WEIGHT_TYPE: EUC_2D``, ``NODE_COORD_SECTION``)."""
    path = Path(path)
    header: dict[str, str] = {}
    coords: dict[int, tuple[float, float]] = {}
    in_coords = False
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line, where = raw.strip(), f"{path}:{number}"
        if not line or line == "EOF":
            continue
        if line.startswith("NODE_COORD_SECTION"):
            in_coords = True
        elif in_coords and line[0].isdigit():
            tokens = line.split()
            if len(tokens) != 3:
                raise ValueError(f"{where}: expected 'index x y', got {len(tokens)} fields")
            xy = _floats(tokens[1:], where)
            if not np.isfinite(xy).all():
                raise ValueError(f"{where}: NaN or infinite coordinate")
            coords[int(tokens[0])] = (xy[0], xy[1])
        elif ":" in line:
            key, value = line.split(":", 1)
            header[key.strip().upper()] = value.strip()
            in_coords = False
        else:
            raise ValueError(f"{where}: unexpected line {line[:40]!r}")
    kind = header.get("EDGE_WEIGHT_TYPE")
    if kind != "EUC_2D":
        raise ValueError(f"{path}: EDGE_WEIGHT_TYPE {kind!r} is not supported (only EUC_2D)")
    dimension = int(header.get("DIMENSION", len(coords)))
    if sorted(coords) != list(range(1, dimension + 1)):
        raise ValueError(f"{path}: expected nodes 1..{dimension}, got {len(coords)} nodes")
    points = np.array([coords[i] for i in range(1, dimension + 1)])
    check_points(points, str(path))
    offset = points.min(0)
    scale = float((points - offset).max()) or 1.0
    return TsplibInstance(header.get("NAME", path.stem), points, offset, scale)
