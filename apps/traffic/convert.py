"""Convert any supported traffic format to our own ``.npz``::

    python -m apps.traffic.convert --format tgcn --values los_speed.csv --graph los_adj.csv \\
        --start-time "2012-03-01 00:00" --out los.npz

reads the files with :func:`~apps.traffic.readers.read_series` (``--format`` one of metr, pemsd7,
tgcn, pems, npz), writes them with :func:`~apps.traffic.npzfiles.write_npz` and prints one line:
sensors, steps, channels, the share of missing readings (readings equal to 0) and the output path.
``--start-time`` gives timestamps to files that carry none (T-GCN, PeMSD7(M), PEMS0X), one every
``interval_minutes``; ``--interval-minutes`` sets that step for pemsd7, tgcn and pems (default: the
reader's, 5 minutes, 15 for T-GCN's Shenzhen files). Bad input prints ``error: <message>`` on stderr
and exits with status 2, leaving no output file.

Our own ``.npz`` (what :func:`~apps.traffic.npzfiles.read_npz` reads; no other keys are allowed):

=====================  ==========  =================================================================
key                    shape       meaning (dtype)
=====================  ==========  =================================================================
``values``             [T, N, C]   readings, T steps × N sensors × C channels (numbers; [T, N] is
                                   read as C = 1); a missing reading is 0. Written as float32.
``adjacency``          [N, N]      ``adjacency[i, j]`` = weight of the edge from sensor i to sensor
                                   j, 0 = no edge, need not be symmetric (non-negative numbers;
                                   written as float32).
``mask``               [T, N]      optional: True = observed (bool, or 0/1 integers); readings where
                                   it is False are read as 0. Never written: a missing reading is
                                   already 0.
``timestamps``         [T]         optional: increasing times (datetime64 of any unit, or int64 unix
                                   seconds); written as datetime64[ns].
``sensor_ids``         [N]         optional: unique IDs (strings or integers; default "0".."N-1");
                                   written as strings.
``coordinates``        [N, 2]      optional: (latitude, longitude), or (x, y) (numbers; written as
                                   float64).
``interval_minutes``   []          optional: minutes between steps, a positive whole number
                                   (default: the timestamps' step, else 5); written as int64.
=====================  ==========  =================================================================
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from apps.traffic.npzfiles import write_npz
from apps.traffic.readers import FORMATS, read_series
from apps.traffic.series import TrafficSeries
from core.train.errors import InputError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m apps.traffic.convert",
        description="Convert traffic readings and their road graph to our own .npz.",
    )
    parser.add_argument("--format", required=True, choices=FORMATS, help="the input's format")
    parser.add_argument("--values", required=True, type=Path, help="the readings file")
    parser.add_argument("--graph", type=Path, help="the road graph file (not for npz)")
    parser.add_argument("--locations", type=Path, help="sensor locations CSV (metr only)")
    parser.add_argument(
        "--start-time",
        help='time of the first step, like "2012-03-01 00:00", for files without timestamps',
    )
    parser.add_argument(
        "--interval-minutes", type=int, help="minutes between steps (pemsd7, tgcn, pems)"
    )
    parser.add_argument("--out", required=True, type=Path, help="the .npz to write")
    return parser.parse_args(argv)


def start_time(text: str) -> np.datetime64:
    """``--start-time`` as ``datetime64[ns]`` (a time-zone aware time in UTC)."""
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError):
        stamp = pd.NaT
    if pd.isna(stamp):
        raise InputError(f"--start-time {text!r}: not a date and time like '2012-03-01 00:00'")
    if stamp.tz is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.as_unit("ns").to_datetime64()


def with_timestamps(series: TrafficSeries, first: np.datetime64) -> TrafficSeries:
    """``series`` with timestamps from ``first``, one every ``interval_minutes``; a series that
    has its own timestamps is refused (they would be silently replaced)."""
    if series.timestamps is not None:
        where = series.files[0] if series.files else "the input"
        raise InputError(f"{where}: has its own timestamps; give no --start-time")
    step = np.timedelta64(series.interval_minutes, "m")
    return dataclasses.replace(series, timestamps=first + np.arange(series.num_steps) * step)


def convert(args: argparse.Namespace) -> str:
    """Read, write, and the one-line summary."""
    first = None if args.start_time is None else start_time(args.start_time)
    options = {} if args.interval_minutes is None else {"interval_minutes": args.interval_minutes}
    series = read_series(args.format, args.values, args.graph, args.locations, **options)
    if first is not None:
        series = with_timestamps(series, first)
    out: Path = args.out
    partial = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_npz(series, partial)
        os.replace(partial, out)
    except OSError as error:
        raise InputError(f"{out}: cannot write ({error.strerror or error})") from None
    finally:
        partial.unlink(missing_ok=True)
    steps, sensors, channels = series.values.shape
    missing = float((series.values == 0).mean())
    return (
        f"{sensors} sensors, {steps} steps, {channels} channel(s), {missing:.2%} missing "
        f"(readings == 0) → {out}"
    )


def main(argv: list[str] | None = None) -> int:
    """The CLI: 0 when written, 2 on bad input (one line on stderr, no output file)."""
    args = parse_args(argv)
    try:
        print(convert(args))
    except InputError as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
