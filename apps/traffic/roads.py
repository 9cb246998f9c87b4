"""The simulator's road network: a few straight highways crossing near the centre of a fictional
city at ``CENTRE_LAT_LON``, as directed sensors and links.

Each direction of a highway is its own corridor, a chain of sensors 1–3 km apart; where two
highways cross, an interchange links the last sensor before the crossing to the first one after it
on the crossing corridors. From the links come the road distances between sensors, DCRNN's Gaussian
adjacency, and the sensors' latitude and longitude around the centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

CENTRE_LAT_LON = (36.5, -119.5)  # a made-up city; only the locations file uses it
KM_PER_DEGREE_LAT = 110.574
KM_PER_DEGREE_LON_AT_EQUATOR = 111.320
MIN_SENSORS = 6  # one highway: two corridors of three sensors
MAX_HIGHWAYS = 16
SPACING_KM = (1.0, 3.0)
LANE_OFFSET_KM = 0.015  # the two directions' sensors sit a lane apart, as in METR-LA
DISTANCE_LIMIT_KM = 10.0  # pairs further apart along the road count as unconnected (as in DCRNN)
ADJACENCY_THRESHOLD = 0.1


@dataclass
class RoadNetwork:
    """Sensors on directed corridors. ``xy`` [N, 2] km east/north of the centre; ``heading``
    [N, 2] unit direction of travel; ``cell_km`` [N] length of road each sensor stands for;
    ``links`` [E, 2] (from, to): a car passing sensor ``from`` reaches sensor ``to`` next;
    ``turns`` [E] whether the link is an interchange ramp; ``corridor`` [N] which corridor a
    sensor is on; ``exit`` [N] its last sensor, where all through traffic leaves the map."""

    xy: np.ndarray
    heading: np.ndarray
    cell_km: np.ndarray
    links: np.ndarray
    turns: np.ndarray
    corridor: np.ndarray
    exit: np.ndarray

    @property
    def num_sensors(self) -> int:
        return len(self.xy)


@dataclass
class Corridor:
    """One direction of one highway: sensors ``first .. first + len(along) - 1`` in travel order,
    ``along`` [n] km increasing; a sensor sits at ``sign * along`` on the highway's axis, whose
    0 is the point closest to the centre (``sign`` = -1: driving the other way)."""

    highway: int
    sign: int
    first: int
    along: np.ndarray


def highway_count(num_sensors: int) -> int:
    """About √N / 2 highways (2 for 24 sensors, 16 for 1000), each corridor ≥ 3 sensors long."""
    count = int(np.clip(round(np.sqrt(num_sensors) / 2), 1, MAX_HIGHWAYS))
    while num_sensors < 2 * 3 * count:
        count -= 1
    return count


def build_network(num_sensors: int, rng: np.random.Generator) -> RoadNetwork:
    """Highways at spread-out angles passing near the centre, their corridors and interchanges."""
    highways = highway_count(num_sensors)
    sizes = np.full(2 * highways, num_sensors // (2 * highways))
    sizes[: num_sensors % (2 * highways)] += 1
    angles = np.pi * (np.arange(highways) + rng.uniform(-0.3, 0.3, highways)) / highways
    direction = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # [H, 2]
    normal = np.stack([-direction[:, 1], direction[:, 0]], axis=1)
    half_length = sizes.mean() * np.mean(SPACING_KM) / 2
    offset = rng.uniform(-0.3, 0.3, highways) * half_length  # how far a highway misses the centre

    corridors, xy, heading, cell_km = [], [], [], []
    first = 0
    for index, size in enumerate(sizes):
        highway, sign = index // 2, 1 - 2 * (index % 2)
        gaps = rng.uniform(*SPACING_KM, size - 1)
        along = np.concatenate([[0.0], np.cumsum(gaps)])
        along += rng.uniform(-0.15, 0.15) * along[-1] - along[-1] / 2
        corridors.append(Corridor(highway, sign, first, along))
        # position = offset·n + s·d, with s = sign·along; traffic keeps right of the centre line
        base = offset[highway] * normal[highway] - sign * LANE_OFFSET_KM * normal[highway]
        xy.append(base + sign * along[:, None] * direction[highway])
        heading.append(np.repeat(sign * direction[highway][None], size, axis=0))
        cell_km.append(np.concatenate([gaps, gaps[-1:]]))
        first += size

    chain = [(c.first + k, c.first + k + 1) for c in corridors for k in range(len(c.along) - 1)]
    ramps = interchange_links(corridors, offset, direction, normal)
    links = np.array(chain + ramps, dtype=np.int64).reshape(-1, 2)
    exit_ = np.zeros(num_sensors, dtype=bool)
    exit_[[c.first + len(c.along) - 1 for c in corridors]] = True
    return RoadNetwork(
        xy=np.concatenate(xy),
        heading=np.concatenate(heading),
        cell_km=np.concatenate(cell_km),
        links=links,
        turns=np.arange(len(links)) >= len(chain),
        corridor=np.repeat(np.arange(len(sizes)), sizes),
        exit=exit_,
    )


def interchange_links(
    corridors: list[Corridor], offset: np.ndarray, direction: np.ndarray, normal: np.ndarray
) -> list[tuple[int, int]]:
    """Ramps where two highways cross inside both corridors: from the last sensor before the
    crossing on one corridor to the first sensor after it on each corridor of the other highway."""
    ramps = []
    for a in corridors:
        for b in corridors:
            if a.highway >= b.highway:
                continue
            # offset_a·n_a + s·d_a = offset_b·n_b + t·d_b, solved for the highway coordinates s, t
            system = np.stack([direction[a.highway], -direction[b.highway]], axis=1)
            if abs(np.linalg.det(system)) < 1e-6:
                continue
            rhs = offset[b.highway] * normal[b.highway] - offset[a.highway] * normal[a.highway]
            s, t = np.linalg.solve(system, rhs)
            at_a, at_b = a.sign * s, b.sign * t  # crossing, in each corridor's travel coordinate
            if not (a.along[0] < at_a < a.along[-1] and b.along[0] < at_b < b.along[-1]):
                continue
            before_a = a.first + np.searchsorted(a.along, at_a) - 1
            before_b = b.first + np.searchsorted(b.along, at_b) - 1
            ramps += [(before_a, before_b + 1), (before_b, before_a + 1)]
    return ramps


def road_distances(network: RoadNetwork) -> np.ndarray:
    """[N, N] km driven from sensor i to sensor j along the links (inf beyond
    ``DISTANCE_LIMIT_KM`` or unreachable)."""
    source, target = network.links.T
    length = np.linalg.norm(network.xy[target] - network.xy[source], axis=1)
    n = network.num_sensors
    graph = csr_matrix((length, (source, target)), shape=(n, n))
    return dijkstra(graph, directed=True, limit=DISTANCE_LIMIT_KM)


def gaussian_adjacency(distances: np.ndarray) -> np.ndarray:
    """DCRNN's weights: exp(-(d/σ)²), σ = std of the finite distances, < 0.1 set to 0. [N, N]."""
    finite = np.isfinite(distances)
    sigma = distances[finite].std()
    adjacency = np.zeros(distances.shape, dtype=np.float32)
    adjacency[finite] = np.exp(-np.square(distances[finite] / sigma))
    adjacency[adjacency < ADJACENCY_THRESHOLD] = 0.0
    np.fill_diagonal(adjacency, 1.0)
    return adjacency


def to_lat_lon(xy: np.ndarray) -> np.ndarray:
    """km east/north of ``CENTRE_LAT_LON`` → [N, 2] (latitude, longitude) in degrees."""
    lat0, lon0 = CENTRE_LAT_LON
    lat = lat0 + xy[:, 1] / KM_PER_DEGREE_LAT
    lon = lon0 + xy[:, 0] / (KM_PER_DEGREE_LON_AT_EQUATOR * np.cos(np.radians(lat0)))
    return np.stack([lat, lon], axis=1)
