"""Bad input gives a clear ValueError naming the file and line; good input reads exactly."""

from __future__ import annotations

import numpy as np
import pytest

from apps.pointer.metrics import tsplib_summary
from apps.pointer.readers import (
    read_points_file,
    read_released_file,
    read_tsplib,
    read_tsplib_tour,
    tsplib_reference,
)

GOOD = "0.1 0.2 0.9 0.1 0.5 0.8 0.5 0.4 output 1 2 3 1\n"


def write(tmp_path, text: str, name: str = "points.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_released_file_reads(tmp_path):
    [(points, output)] = read_released_file(write(tmp_path, GOOD))
    assert points.shape == (4, 2) and output.tolist() == [1, 2, 3, 1]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0.1 nan 0.9 0.1 0.5 0.8 output 1 2 3 1", "NaN"),
        ("0.1 0.2 0.1 0.2 0.5 0.8 0.5 0.4 output 1 3 4 1", "duplicate"),
        ("0.1 0.2 0.9 0.1 output 1 2 1", "at least 3"),
        ("0.1 0.2 0.9 0.1 0.5 output 1 2 3 1", "odd number"),
        ("0.1 0.2 0.9 0.1 0.5 0.8 1 2 3 1", "missing the 'output'"),
        ("0.1 0.2 0.9 0.1 0.5 0.8 output 1 2 4 1", "out of range"),
        ("0.1 0.2 0.9 0.1 0.5 0.8 output", "empty output"),
    ],
)
def test_bad_released_line_names_file_and_line(tmp_path, line, message):
    path = write(tmp_path, GOOD + line + "\n")
    with pytest.raises(ValueError, match=message) as error:
        read_released_file(path)
    assert f"{path}:2" in str(error.value)


def test_plain_points_file(tmp_path):
    [(points, target)] = read_points_file(write(tmp_path, "0 0\n1 0\n0 1\n"))
    assert target is None and points.shape == (3, 2)
    with pytest.raises(ValueError, match=r"points.txt:2: expected 'x y'"):
        read_points_file(write(tmp_path, "0 0\n1 0 3\n0 1\n"))
    with pytest.raises(ValueError, match="need at least 3"):
        read_points_file(write(tmp_path, "0 0\n1 0\n"))


def test_tsplib_reader_and_nint_length(tmp_path):
    text = (
        "NAME: square\nTYPE: TSP\nDIMENSION: 4\nEDGE_WEIGHT_TYPE: EUC_2D\nNODE_COORD_SECTION\n"
        "1 0 0\n2 10.4 0\n3 10.4 10.4\n4 0 10.4\nEOF\n"
    )
    instance = read_tsplib(write(tmp_path, text, "square.tsp"))
    assert instance.name == "square"
    np.testing.assert_allclose(instance.unit_points.max(0), [1.0, 1.0])
    assert instance.tour_length(np.array([1, 2, 3, 4, 1])) == 40  # nint(10.4) = 10 per edge
    with pytest.raises(ValueError, match=r"square\.tsp:7: expected 'index x y'"):
        read_tsplib(write(tmp_path, text.replace("2 10.4 0", "2 10.4"), "square.tsp"))


def tsplib_text(name: str, coords: np.ndarray) -> str:
    """A TSPLIB EUC_2D file's text for ``coords`` [n, 2]."""
    nodes = "".join(f"{i} {x} {y}\n" for i, (x, y) in enumerate(coords.tolist(), start=1))
    return (
        f"NAME: {name}\nTYPE: TSP\nDIMENSION: {len(coords)}\nEDGE_WEIGHT_TYPE: EUC_2D\n"
        f"NODE_COORD_SECTION\n{nodes}EOF\n"
    )


# A 30 × 40 rectangle with a fifth city halfway along its bottom side: the optimal tour walks the
# rectangle's sides, 15 + 15 + 40 + 30 + 40 = 140.
RECTANGLE = np.array([[0, 0], [30, 0], [30, 40], [0, 40], [15, 0]])
RECTANGLE_TSP = tsplib_text("rectangle5", RECTANGLE)
RECTANGLE_OPT_TOUR = (
    "NAME : rectangle5.opt.tour\nCOMMENT : written by hand\nTYPE : TOUR\nDIMENSION : 5\n"
    "TOUR_SECTION\n1\n5 2\n3\n4\n-1\nEOF\n"
)


def test_tsplib_tour_reader(tmp_path):
    expected = [1, 5, 2, 3, 4, 1]
    tour = read_tsplib_tour(write(tmp_path, RECTANGLE_OPT_TOUR, "a.opt.tour"))
    assert tour.tolist() == expected
    for ending in ("-1\n", "EOF\n", ""):  # -1 alone, EOF alone, or neither
        text = RECTANGLE_OPT_TOUR.replace("-1\nEOF\n", ending)
        assert read_tsplib_tour(write(tmp_path, text, "b.opt.tour"), 5).tolist() == expected


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("5 2\n", "5 1\n", r":7: node 1 repeated \(first on line 6\)"),
        ("5 2\n", "5 6\n", r":7: node 6 out of range 1..5"),
        ("5 2\n", "5 0\n", r":7: node 0 out of range 1..5"),
        ("5 2\n", "5 two\n", r":7: node id 'two' is not an integer"),
        ("4\n-1\n", "-1\n", r":10: the tour visits 4 of 5 nodes"),
        ("-1\nEOF\n", "-1\n4\n", r":11: '4' after the tour's -1"),
        ("TYPE : TOUR", "TYPE : TSP", r":5: TYPE 'TSP', expected 'TOUR'"),
        ("COMMENT : written by hand", "written by hand", r":2: unexpected line"),
    ],
)
def test_bad_tsplib_tour_names_file_and_line(tmp_path, old, new, message):
    assert old in RECTANGLE_OPT_TOUR
    path = write(tmp_path, RECTANGLE_OPT_TOUR.replace(old, new), "bad.opt.tour")
    with pytest.raises(ValueError, match=f"bad.opt.tour{message}"):
        read_tsplib_tour(path)


def test_tsplib_tour_must_fit_the_instance(tmp_path):
    path = write(tmp_path, RECTANGLE_OPT_TOUR, "a.opt.tour")
    with pytest.raises(ValueError, match=r"a\.opt\.tour:5: DIMENSION 5, but the instance has 6"):
        read_tsplib_tour(path, 6)
    no_dimension = write(tmp_path, RECTANGLE_OPT_TOUR.replace("DIMENSION : 5\n", ""), "b.opt.tour")
    assert read_tsplib_tour(no_dimension, 5).tolist() == [1, 5, 2, 3, 4, 1]
    with pytest.raises(ValueError, match=r"b\.opt\.tour:4: no DIMENSION"):
        read_tsplib_tour(no_dimension)
    with pytest.raises(ValueError, match="no TOUR_SECTION"):
        read_tsplib_tour(write(tmp_path, "NAME : x\nTYPE : TOUR\nEOF\n", "c.opt.tour"))


def test_tsplib_gap_against_the_optimal_tour_file(tmp_path):
    tsp_path = write(tmp_path, RECTANGLE_TSP, "rectangle5.tsp")
    instance = read_tsplib(tsp_path)
    ortools_like = np.array([1, 2, 3, 4, 5, 1])  # 30 + 40 + 30 + nint(√1825 = 42.7) + 15 = 158
    assert tsplib_reference(instance, tsp_path, ortools_like) == (158, "OR-Tools tour (200 ms)")
    write(tmp_path, RECTANGLE_OPT_TOUR, "rectangle5.opt.tour")
    reference = tsplib_reference(instance, tsp_path, ortools_like, "OR-Tools tour (100 ms)")
    assert reference == (140, "optimal tour file")
    summary = tsplib_summary([instance], [ortools_like], [reference[0]])
    assert summary == pytest.approx(
        {
            "tsplib_length": 158,
            "tsplib_reference_length": 140,
            "tsplib_gap_pct": 100 * 18 / 140,  # ≈ 12.86 %
        }
    )


def test_tsplib_summary_averages_instance_gaps_over_valid_tours(tmp_path):
    rectangle = read_tsplib(write(tmp_path, RECTANGLE_TSP, "rectangle5.tsp"))
    big = read_tsplib(write(tmp_path, tsplib_text("doubled5", 2 * RECTANGLE), "d.tsp"))
    assert big.tour_length(np.array([1, 5, 2, 3, 4, 1])) == 280
    optimal, detour, invalid = (
        np.array(t) for t in ([1, 5, 2, 3, 4, 1], [1, 2, 3, 4, 5, 1], [1, 2, 1])
    )
    summary = tsplib_summary(
        [rectangle, big, rectangle], [detour, optimal, invalid], [140, 280, 140]
    )
    assert summary == pytest.approx(
        {
            "tsplib_length": (158 + 280) / 2,
            "tsplib_reference_length": (140 + 280) / 2,
            "tsplib_gap_pct": (100 * 18 / 140 + 0) / 2,
        }
    )
    nothing_valid = tsplib_summary([rectangle], [invalid], [140])
    assert all(np.isnan(value) for value in nothing_valid.values()) and len(nothing_valid) == 3


def test_tsplib_known_optimum_by_name(tmp_path):
    coords = np.random.default_rng(0).integers(0, 1000, size=(52, 2))
    fallback = np.append(np.arange(1, 53), 1)
    berlin = write(tmp_path, tsplib_text("berlin52", coords), "berlin52.tsp")
    assert tsplib_reference(read_tsplib(berlin), berlin, fallback) == (
        7542,
        "known optimum (TSPLIB)",
    )
    unknown = write(tmp_path, tsplib_text("mine52", coords), "mine52.tsp")
    instance = read_tsplib(unknown)
    assert tsplib_reference(instance, unknown, fallback) == (
        instance.tour_length(fallback),
        "OR-Tools tour (200 ms)",
    )
    # a file that calls itself berlin52 but has 5 cities is not berlin52
    fake = write(tmp_path, tsplib_text("berlin52", RECTANGLE), "fake.tsp")
    rectangle_tour = np.array([1, 5, 2, 3, 4, 1])
    assert tsplib_reference(read_tsplib(fake), fake, rectangle_tour)[1] == "OR-Tools tour (200 ms)"
