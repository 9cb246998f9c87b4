"""Readers for the point files of the field, validated line by line.

* The released Ptr-Net files: one instance a line, ``x1 y1 x2 y2 … output i1 i2 …`` (1-based indices;
  convex hull, Delaunay and TSP variants differ only in the output sequence).
* Plain point files: one ``x y`` a line, the whole file one instance (for ``predict``).
* TSPLIB ``.tsp`` files with ``EDGE_WEIGHT_TYPE: EUC_2D``, and TSPLIB tour files (``.opt.tour``)
  for the optimal tour beside an instance.

Bad input raises ``InputError`` (a ``ValueError``) naming the file and line; nothing is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.train.errors import InputError

# points [n, 2] and the 1-based output sequence [T] (None when the file has none)
Instance = tuple[np.ndarray, np.ndarray | None]


def check_points(points: np.ndarray, where: str) -> None:
    """Refuse NaN/inf coordinates, fewer than 3 points and duplicate points, naming ``where``."""
    if not np.isfinite(points).all():
        raise InputError(f"{where}: NaN or infinite coordinate")
    if len(points) < 3:
        raise InputError(f"{where}: {len(points)} points, need at least 3")
    unique = np.unique(points, axis=0)
    if len(unique) != len(points):
        raise InputError(f"{where}: {len(points) - len(unique)} duplicate point(s)")


def _floats(tokens: list[str], where: str) -> np.ndarray:
    try:
        return np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError as error:
        raise InputError(f"{where}: not a number ({error})") from None


def parse_released_line(line: str, where: str) -> Instance:
    """One line of a released file → (points [n, 2], output [T] 1-based)."""
    if "output" not in line.split():
        raise InputError(f"{where}: missing the 'output' separator")
    left, right = line.split("output", 1)
    coords = _floats(left.split(), where)
    if len(coords) % 2:
        raise InputError(f"{where}: odd number of coordinates ({len(coords)})")
    points = coords.reshape(-1, 2)
    check_points(points, where)
    try:
        output = np.array([int(t) for t in right.split()], dtype=np.int64)
    except ValueError as error:
        raise InputError(f"{where}: output index is not an integer ({error})") from None
    if output.size == 0:
        raise InputError(f"{where}: empty output sequence")
    if output.min() < 1 or output.max() > len(points):
        raise InputError(
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
        raise InputError(f"{path}: no instances")
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
            raise InputError(f"{path}:{number}: expected 'x y', got {len(values)} values")
        if not np.isfinite(values).all():
            raise InputError(f"{path}:{number}: NaN or infinite coordinate")
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
                raise InputError(f"{where}: expected 'index x y', got {len(tokens)} fields")
            xy = _floats(tokens[1:], where)
            if not np.isfinite(xy).all():
                raise InputError(f"{where}: NaN or infinite coordinate")
            coords[int(tokens[0])] = (xy[0], xy[1])
        elif ":" in line:
            key, value = line.split(":", 1)
            header[key.strip().upper()] = value.strip()
            in_coords = False
        else:
            raise InputError(f"{where}: unexpected line {line[:40]!r}")
    kind = header.get("EDGE_WEIGHT_TYPE")
    if kind != "EUC_2D":
        raise InputError(f"{path}: EDGE_WEIGHT_TYPE {kind!r} is not supported (only EUC_2D)")
    dimension = int(header.get("DIMENSION", len(coords)))
    if sorted(coords) != list(range(1, dimension + 1)):
        raise InputError(f"{path}: expected nodes 1..{dimension}, got {len(coords)} nodes")
    points = np.array([coords[i] for i in range(1, dimension + 1)])
    check_points(points, str(path))
    offset = points.min(0)
    scale = float((points - offset).max()) or 1.0
    return TsplibInstance(header.get("NAME", path.stem), points, offset, scale)


def read_tsplib_tour(path: str | Path, num_nodes: int | None = None) -> np.ndarray:
    """Read a TSPLIB tour file (``.opt.tour``): ``KEY : value`` header lines, ``TOUR_SECTION``, the
    1-based node ids (any number a line) ended by ``-1`` and/or ``EOF``. The ids must be a permutation
    of 1..n, n = ``num_nodes`` (the instance's size) and the file's ``DIMENSION`` (they must agree
    when both are given). Returns the closed tour [n + 1] (the first node repeated at the end)."""
    path = Path(path)
    header: dict[str, str] = {}
    line_of: dict[int, int] = {}  # node id → the line it is on, in tour order
    size: int | None = None  # known once TOUR_SECTION is reached
    ended = False
    last_line = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line, where = raw.strip(), f"{path}:{number}"
        last_line = number
        if not line:
            continue
        if line == "EOF":
            break
        if size is None:
            if line.startswith("TOUR_SECTION"):
                size = _tour_size(where, header, num_nodes)
            elif ":" in line:
                key, value = line.split(":", 1)
                header[key.strip().upper()] = value.strip()
            else:
                raise InputError(f"{where}: unexpected line {line[:40]!r} before TOUR_SECTION")
            continue
        for token in line.split():
            if ended:
                raise InputError(f"{where}: {token!r} after the tour's -1 (one tour expected)")
            try:
                node = int(token)
            except ValueError:
                raise InputError(f"{where}: node id {token!r} is not an integer") from None
            if node == -1:
                ended = True
            elif not 1 <= node <= size:
                raise InputError(f"{where}: node {node} out of range 1..{size}")
            elif node in line_of:
                raise InputError(f"{where}: node {node} repeated (first on line {line_of[node]})")
            else:
                line_of[node] = number
    if size is None:
        raise InputError(f"{path}: no TOUR_SECTION")
    if len(line_of) != size:
        raise InputError(f"{path}:{last_line}: the tour visits {len(line_of)} of {size} nodes")
    tour = np.array(list(line_of), dtype=np.int64)
    return np.append(tour, tour[0])


def _tour_size(where: str, header: dict[str, str], num_nodes: int | None) -> int:
    """The node count of a tour file at its ``TOUR_SECTION`` line ``where``: the instance's
    ``num_nodes`` and/or the header's ``DIMENSION``, which must agree."""
    kind = header.get("TYPE", "TOUR")
    if kind != "TOUR":
        raise InputError(f"{where}: TYPE {kind!r}, expected 'TOUR'")
    if "DIMENSION" not in header:
        if num_nodes is None:
            raise InputError(f"{where}: no DIMENSION before TOUR_SECTION")
        return num_nodes
    try:
        dimension = int(header["DIMENSION"])
    except ValueError:
        raise InputError(f"{where}: DIMENSION {header['DIMENSION']!r} is not an integer") from None
    if num_nodes is not None and dimension != num_nodes:
        raise InputError(f"{where}: DIMENSION {dimension}, but the instance has {num_nodes} nodes")
    return dimension


# Optimal tour lengths of the symmetric EUC_2D instances of TSPLIB (up to ~1000 cities), as published
# with the library (TSPLIB 95, "Optimal solutions for symmetric TSPs").
TSPLIB_OPTIMA = {
    "a280": 2579,
    "berlin52": 7542,
    "bier127": 118282,
    "ch130": 6110,
    "ch150": 6528,
    "d198": 15780,
    "d493": 35002,
    "d657": 48912,
    "eil51": 426,
    "eil76": 538,
    "eil101": 629,
    "fl417": 11861,
    "gil262": 2378,
    "kroA100": 21282,
    "kroB100": 22141,
    "kroC100": 20749,
    "kroD100": 21294,
    "kroE100": 22068,
    "kroA150": 26524,
    "kroB150": 26130,
    "kroA200": 29368,
    "kroB200": 29437,
    "lin105": 14379,
    "lin318": 42029,
    "p654": 34643,
    "pcb442": 50778,
    "pr76": 108159,
    "pr107": 44303,
    "pr124": 59030,
    "pr136": 96772,
    "pr144": 58537,
    "pr152": 73682,
    "pr226": 80369,
    "pr264": 49135,
    "pr299": 48191,
    "pr439": 107217,
    "pr1002": 259045,
    "rat99": 1211,
    "rat195": 2323,
    "rat575": 6773,
    "rat783": 8806,
    "rd100": 7910,
    "rd400": 15281,
    "st70": 675,
    "ts225": 126643,
    "tsp225": 3916,
    "u159": 42080,
    "u574": 36905,
    "u724": 41910,
}
OPTIMAL_TOUR_FILE = "optimal tour file"
KNOWN_OPTIMUM = "known optimum (TSPLIB)"


def optimal_tour_path(tsp_path: str | Path) -> Path:
    """Where TSPLIB keeps an instance's optimal tour: ``berlin52.tsp`` → ``berlin52.opt.tour``."""
    tsp_path = Path(tsp_path)
    return tsp_path.with_name(f"{tsp_path.stem}.opt.tour")


def tsplib_reference(
    instance: TsplibInstance,
    tsp_path: str | Path,
    fallback_tour: np.ndarray,
    fallback_source: str = "OR-Tools tour (200 ms)",
) -> tuple[int, str]:
    """The length to measure a TSPLIB gap against, in the instance's units, and where it came from:
    the ``.opt.tour`` beside ``tsp_path`` when present, else the published optimum of the instance's
    NAME (:data:`TSPLIB_OPTIMA`; used only when the size in the name matches the instance), else the
    length of ``fallback_tour`` (closed, 1-based), labelled ``fallback_source``."""
    tour_path = optimal_tour_path(tsp_path)
    if tour_path.exists():
        tour = read_tsplib_tour(tour_path, len(instance.coords))
        return instance.tour_length(tour), OPTIMAL_TOUR_FILE
    size = re.search(r"\d+$", instance.name)
    if instance.name in TSPLIB_OPTIMA and size and int(size.group()) == len(instance.coords):
        return TSPLIB_OPTIMA[instance.name], KNOWN_OPTIMUM
    return instance.tour_length(fallback_tour), fallback_source
