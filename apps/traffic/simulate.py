"""The built-in traffic data: a seeded freeway simulator that needs no download.

It writes the three files a user downloads for METR-LA (``speed.h5``, ``adj_mx.pkl``,
``graph_sensor_locations.csv``), so simulated and real data go through the same reader.

The network (:mod:`apps.traffic.roads`): a few straight highways crossing near the centre of a
fictional city, each direction a corridor of sensors 1–3 km apart, linked at interchanges.

The traffic: the cell transmission model (Daganzo 1994) on that graph, every sensor watching one
cell of road, advanced in 30 s substeps. Its triangular flow–density law sends congestion
backwards from a bottleneck (waves within a jam travel upstream at 15–20 km/h), so an upstream
sensor slows minutes after its downstream neighbour; the queue clears when demand falls. Demand
enters on ramps with daily and weekly cycles (inbound in the morning, outbound in the evening,
flatter weekends, quiet nights) and small day-to-day changes; lane drops, merges, rainy days and
incidents cut capacity. Readings are the interval's mean speed in mph with detector noise;
missing readings (scattered drops and outages) are 0.0, as in the public files.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from apps.traffic.roads import (
    MIN_SENSORS,
    RoadNetwork,
    build_network,
    gaussian_adjacency,
    road_distances,
    to_lat_lon,
)
from apps.traffic.series import TrafficSeries
from core.train.files import write_atomically

log = logging.getLogger(__name__)

DEFAULT_MISSING_RATE = 0.05
MPH = 1.609344  # km/h per mph
TURN_SHARE = 0.08  # of a cell's traffic that takes each interchange ramp
MAX_TURN_SHARE = 0.3
SUBSTEP_HOURS = 0.5 / 60  # 30 s: at 70 mph a car covers 0.94 km, under the shortest cell (CFL)
WARM_UP_STEPS = 12
DEMAND = 1.2  # a busy inbound sensor's peak demand, in capacities: peaks jam at bottlenecks
MIN_RAMP_SHARE = 0.02  # every sensor's on-ramp carries some traffic
WOBBLE = 0.03  # std of the slow per-sensor demand fluctuation
SPEED_RANGE_MPH = (3.0, 80.0)  # what a loop detector reports
OUTAGE_SHARE = 0.7  # of the missing readings that come from outages rather than single drops
OUTAGE_MINUTES = (30.0, 360.0)
FILE_NAMES = {
    "speed": "speed.h5",
    "adjacency": "adj_mx.pkl",
    "locations": "graph_sensor_locations.csv",
}


@dataclass
class Cells:
    """Per-sensor road and demand traits, each [N]. Flows are in units of a typical section's
    capacity (1 ≈ what its lanes carry in an hour), densities in those units per km."""

    free_kmh: np.ndarray
    wave_kmh: np.ndarray
    capacity: np.ndarray
    jam_density: np.ndarray
    jam_floor_mph: np.ndarray
    noise_mph: np.ndarray
    exit_share: np.ndarray  # leaves the network here: off-ramp, or everything at a corridor's end
    level: np.ndarray  # demand scale: busier near the centre
    morning: np.ndarray  # weight of the morning peak: high for inbound sensors
    evening: np.ndarray  # weight of the evening peak: high for outbound sensors


def cell_traits(network: RoadNetwork, rng: np.random.Generator) -> tuple[Cells, np.ndarray]:
    """Traits of every sensor, and the share of a cell's traffic taking each link [E]."""
    n = network.num_sensors
    radius = np.linalg.norm(network.xy, axis=1)
    # +1 driving straight at the centre, -1 straight away from it
    inbound = -np.sum(network.heading * network.xy, axis=1) / np.maximum(radius, 1e-6)
    toward = (1 + inbound) / 2
    corridor_mph = rng.uniform(58, 68, network.corridor.max() + 1)
    free_mph = np.clip(corridor_mph[network.corridor] + rng.normal(0, 2.5, n), 55, 70)
    capacity = rng.uniform(0.95, 1.05, n)
    bottleneck = rng.random(n) < 0.12  # lane drops, steep grades, weaving sections
    capacity[bottleneck] *= rng.uniform(0.75, 0.88, bottleneck.sum())
    wave_kmh = rng.uniform(15, 20, n)
    free_kmh = free_mph * MPH
    # exits cluster downtown: more traffic leaves near the centre
    off_ramp = rng.uniform(0.04, 0.10, n) * (1 + np.exp(-radius / 8))

    source = network.links[:, 0]
    # where several interchanges share one stretch, their ramps split at most MAX_TURN_SHARE
    ramps = np.bincount(source[network.turns], minlength=n)
    turn_share = np.minimum(TURN_SHARE, MAX_TURN_SHARE / np.maximum(ramps, 1))
    turns_out = ramps * turn_share
    exit_share = np.where(network.exit, 1.0 - turns_out, off_ramp)
    link_share = np.where(
        network.turns, turn_share[source], 1.0 - off_ramp[source] - turns_out[source]
    )
    cells = Cells(
        free_kmh=free_kmh,
        wave_kmh=wave_kmh,
        capacity=capacity,
        jam_density=capacity / free_kmh + capacity / wave_kmh,  # the triangle closes at q = 0
        jam_floor_mph=rng.uniform(5, 12, n),
        noise_mph=rng.uniform(1.0, 2.5, n),
        exit_share=exit_share,
        level=DEMAND * rng.uniform(0.9, 1.0, n) * (0.92 + 0.08 * np.exp(-radius / 10)),
        morning=0.3 + 0.7 * toward,
        evening=0.3 + 0.7 * (1 - toward),
    )
    return cells, link_share


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def calendar(timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hour of day (float), day number from the first day, and whether it is a weekend; each [T]."""
    day = timestamps.astype("datetime64[D]")
    hours = (timestamps - day) / np.timedelta64(1, "h")
    weekend = (day.astype(np.int64) + 3) % 7 >= 5  # 1970-01-01 was a Thursday
    return hours, (day - day[0]).astype(np.int64), weekend


def demand_profile(
    hours: np.ndarray, day_index: np.ndarray, weekend: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Network-wide demand shapes [T]: all-day base, morning peak, evening peak. Weekdays have
    both peaks; weekends a late, flat midday hump; each day's peaks shift and scale a little."""
    days = day_index[-1] + 1
    shift = rng.normal(0, 0.35, days)[day_index]  # hours
    amplitude = rng.normal(1, 0.1, days)[day_index]
    workday = _sigmoid((hours - 5.5) / 0.5) * _sigmoid((21.0 - hours) / 0.9)
    rest_day = _sigmoid((hours - 7.5) / 0.8) * _sigmoid((22.5 - hours) / 1.0)
    midday = np.exp(-0.5 * np.square((hours - 14.0) / 2.5))
    base = np.where(weekend, 0.12 + 0.38 * rest_day + 0.12 * midday, 0.15 + 0.45 * workday)
    morning = np.exp(-0.5 * np.square((hours - 7.75 - shift) / 1.0)) * amplitude
    evening = np.exp(-0.5 * np.square((hours - 17.25 - shift) / 1.3)) * amplitude
    return base, np.where(weekend, 0.0, morning), np.where(weekend, 0.0, evening)


def incident_events(
    num_sensors: int, total_substeps: int, rng: np.random.Generator
) -> dict[int, list[tuple[int, float]]]:
    """Crashes and breakdowns, 15–90 min each, max(2, N / 16) a day over the network: substep →
    [(sensor, capacity factor)] to multiply in at the start and divide out at the end (so
    overlapping incidents at one sensor compose)."""
    per_day = max(2.0, num_sensors / 16)
    days = total_substeps * SUBSTEP_HOURS / 24
    count = rng.poisson(per_day * days)
    sensor = rng.integers(0, num_sensors, count)
    start = rng.integers(0, total_substeps, count)
    length = (rng.uniform(15, 90, count) / 60 / SUBSTEP_HOURS).astype(np.int64)
    factor = rng.uniform(0.3, 0.6, count)
    events: dict[int, list[tuple[int, float]]] = {}
    for s, t0, dt, f in zip(sensor, start, length, factor, strict=True):
        events.setdefault(int(t0), []).append((int(s), float(f)))
        events.setdefault(int(t0 + dt), []).append((int(s), 1.0 / float(f)))
    return events


def transmit(
    density: np.ndarray,
    ramp: np.ndarray,
    capacity: np.ndarray,
    cells: Cells,
    link_share: np.ndarray,
    links: np.ndarray,
    move: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """One cell-transmission substep: new density [N] and the flow that left each cell [N].

    A cell sends min(free flow, capacity) and receives min(capacity, what the queue leaves room
    for); when more arrives than a cell receives, every link and the on-ramp are cut pro rata."""
    source, target = links.T
    n = len(density)
    send = np.minimum(cells.free_kmh * density, capacity)
    receive = np.minimum(capacity, cells.wave_kmh * (cells.jam_density - density))
    wanted = link_share * send[source]
    arriving = np.bincount(target, wanted, n) + ramp
    admitted = np.minimum(1.0, receive / np.maximum(arriving, 1e-9))
    moved = wanted * admitted[target]
    out = cells.exit_share * send + np.bincount(source, moved, n)
    density = density + move * (np.bincount(target, moved, n) + ramp * admitted - out)
    return density, out


def run_traffic(
    network: RoadNetwork,
    cells: Cells,
    link_share: np.ndarray,
    timestamps: np.ndarray,
    interval_minutes: int,
    rng: np.random.Generator,
    progress: bool,
) -> np.ndarray:
    """Mean speed of every interval, [T, N] mph, before detector noise."""
    steps, n = len(timestamps), network.num_sensors
    substeps = round(interval_minutes / 60 / SUBSTEP_HOURS)
    hours, day_index, weekend = calendar(timestamps)
    base, morning, evening = demand_profile(hours, day_index, weekend, rng)
    days = day_index[-1] + 1
    # small day-to-day changes: the whole city, each ramp, and rain that slows everyone
    day_scale = rng.normal(1, 0.05, (days, 1)) * rng.normal(1, 0.04, (days, n))
    weather = np.where(rng.random(days) < 0.1, rng.uniform(0.85, 0.93, days), 1.0)
    incidents = incident_events(n, steps * substeps, rng)

    source, target = network.links.T
    move = SUBSTEP_HOURS / network.cell_km
    critical = cells.capacity / cells.free_kmh
    density = 0.1 * critical
    blocked = np.ones(n)  # capacity left by incidents
    wobble = np.zeros(n)  # slow, sensor-level demand fluctuation, AR(1)
    keep = 0.85 ** (interval_minutes / 5)
    speed = np.empty((steps, n), dtype=np.float32)
    # an hour of the first step's demand first, so the series starts from settled traffic
    schedule = [0] * WARM_UP_STEPS + list(range(steps))
    bar = tqdm(total=steps, desc="simulating traffic", unit="step", disable=not progress)
    for index, t in enumerate(schedule):
        recording = index >= WARM_UP_STEPS
        wobble = keep * wobble + WOBBLE * np.sqrt(1 - keep**2) * rng.standard_normal(n)
        day = day_index[t]
        demand = cells.level * day_scale[day] * (1 + wobble)
        demand *= base[t] + 0.45 * (cells.morning * morning[t] + cells.evening * evening[t])
        # on-ramps top the traffic arriving from upstream up to the local demand (in free flow)
        arriving_free = np.bincount(target, link_share * demand[source], n)
        ramp = np.maximum(demand - arriving_free, MIN_RAMP_SHARE * demand)
        capacity = cells.capacity * blocked * weather[day]
        flow = np.zeros(n)
        held = np.zeros(n)
        for sub in range(substeps):
            k = t * substeps + sub
            if recording and k in incidents:
                for sensor, factor in incidents[k]:
                    blocked[sensor] *= factor
                capacity = cells.capacity * blocked * weather[day]
            density, out = transmit(density, ramp, capacity, cells, link_share, network.links, move)
            flow += out
            held += density
        if recording:
            # space-mean speed = flow / density; a lane closure also slows the cars squeezing past,
            # and thick but moving traffic drives a little under free speed, as detectors show
            crowding = np.minimum(held / substeps / critical, 1.0)
            slowing = (1 - 0.06 * crowding**2) * (0.5 + 0.5 * blocked)
            speed[t] = flow / np.maximum(held, 1e-9) / MPH * slowing
            bar.update()
    bar.close()
    return speed


def missing_mask(
    steps: int, sensors: int, rate: float, interval_minutes: int, rng: np.random.Generator
) -> np.ndarray:
    """[T, N] bool: outages (one sensor silent for 30 min to 6 h) plus scattered single drops,
    ``rate`` of all readings together."""
    mask = np.zeros((steps, sensors), dtype=bool)
    wanted = round(rate * steps * sensors)
    low, high = (minutes / interval_minutes for minutes in OUTAGE_MINUTES)
    covered = 0
    while covered < OUTAGE_SHARE * wanted:
        sensor = int(rng.integers(sensors))
        length = max(1, int(np.exp(rng.uniform(np.log(low), np.log(high)))))  # mostly short
        start = int(rng.integers(-length + 1, steps))
        window = mask[max(start, 0) : start + length, sensor]
        covered += window.size - int(window.sum())
        window[:] = True
    still = wanted - covered
    if still > 0:
        mask |= rng.random(mask.shape) < still / max(mask.size - covered, 1)
    return mask


def simulate(
    num_sensors: int = 64,
    days: int = 28,
    seed: int = 0,
    interval_minutes: int = 5,
    start: str = "2024-03-04 00:00",
    missing_rate: float = DEFAULT_MISSING_RATE,
    progress: bool = True,
) -> TrafficSeries:
    """``days`` of speeds at ``num_sensors`` sensors from ``start`` (a Monday by default):
    values [T, N, 1] float32 mph, 0.0 where missing; the same arguments give the same arrays."""
    if num_sensors < MIN_SENSORS:
        raise ValueError(f"num_sensors must be at least {MIN_SENSORS}, got {num_sensors}")
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if interval_minutes < 1 or 24 * 60 % interval_minutes:
        raise ValueError(f"interval_minutes must divide a day, got {interval_minutes}")
    if not 0 <= missing_rate <= 0.5:
        raise ValueError(f"missing_rate must be in [0, 0.5], got {missing_rate}")
    rng = np.random.default_rng(seed)
    network = build_network(num_sensors, rng)
    adjacency = gaussian_adjacency(road_distances(network))
    steps = days * 24 * 60 // interval_minutes
    first = pd.Timestamp(start).as_unit("ns").to_datetime64()
    timestamps = first + np.arange(steps) * np.timedelta64(interval_minutes, "m")
    cells, link_share = cell_traits(network, rng)
    speed = run_traffic(network, cells, link_share, timestamps, interval_minutes, rng, progress)
    # stop-and-go traffic still averages a few mph; the detector adds its own noise on top
    speed = np.maximum(speed, cells.jam_floor_mph)
    speed = np.clip(speed + cells.noise_mph * rng.standard_normal(speed.shape), *SPEED_RANGE_MPH)
    speed[missing_mask(steps, num_sensors, missing_rate, interval_minutes, rng)] = 0.0
    width = max(3, len(str(num_sensors - 1)))
    return TrafficSeries(
        values=speed[..., None].astype(np.float32),
        adjacency=adjacency,
        sensor_ids=[f"s{i:0{width}d}" for i in range(num_sensors)],
        interval_minutes=interval_minutes,
        timestamps=timestamps,
        coordinates=to_lat_lon(network.xy),
    )


def metr_paths(folder: Path) -> dict[str, Path]:
    """Where the three METR-LA files live in ``folder``, keyed speed / adjacency / locations."""
    return {key: Path(folder) / name for key, name in FILE_NAMES.items()}


def write_metr_files(series: TrafficSeries, folder: Path) -> dict[str, Path]:
    """``series`` as METR-LA's files in ``folder``: the first channel as the speed table, the
    adjacency pickle, and the locations (latitude, longitude) CSV."""
    if series.timestamps is None or series.coordinates is None:
        raise ValueError("METR-LA files need timestamps and coordinates")
    paths = metr_paths(folder)
    paths["speed"].parent.mkdir(parents=True, exist_ok=True)
    # float64, as in the downloaded speed table
    frame = pd.DataFrame(
        series.values[..., 0].astype(np.float64),
        index=pd.DatetimeIndex(series.timestamps),
        columns=list(series.sensor_ids),
    )
    write_atomically(paths["speed"], lambda p: frame.to_hdf(p, key="df", mode="w"))

    ids = list(series.sensor_ids)
    graph = [ids, {sensor: i for i, sensor in enumerate(ids)}, series.adjacency.astype(np.float32)]

    def dump_graph(path: Path) -> None:
        with open(path, "wb") as f:
            pickle.dump(graph, f, protocol=2)

    write_atomically(paths["adjacency"], dump_graph)

    rows = ["index,sensor_id,latitude,longitude"] + [
        f"{i},{sensor},{lat:.6f},{lon:.6f}"
        for i, (sensor, (lat, lon)) in enumerate(zip(ids, series.coordinates, strict=True))
    ]
    write_atomically(paths["locations"], lambda p: p.write_text("\n".join(rows) + "\n"))
    return paths


def cached_simulation(
    folder: Path,
    num_sensors: int = 64,
    days: int = 28,
    seed: int = 0,
    interval_minutes: int = 5,
    missing_rate: float = DEFAULT_MISSING_RATE,
    progress: bool = True,
) -> dict[str, Path]:
    """:func:`simulate` written as METR-LA files under ``folder/sim_n<N>_d<days>_s<seed>`` (plus
    ``_i<minutes>`` / ``_m<rate>`` when those differ from the defaults), only when not there yet."""
    name = f"sim_n{num_sensors}_d{days}_s{seed}"
    if interval_minutes != 5:
        name += f"_i{interval_minutes}"
    if missing_rate != DEFAULT_MISSING_RATE:
        name += f"_m{missing_rate:g}"
    paths = metr_paths(Path(folder) / name)
    if all(path.exists() for path in paths.values()):
        return paths
    log.info("simulating %d sensors × %d days (seed %d) into %s", num_sensors, days, seed, name)
    series = simulate(
        num_sensors, days, seed, interval_minutes, missing_rate=missing_rate, progress=progress
    )
    return write_metr_files(series, paths["speed"].parent)
