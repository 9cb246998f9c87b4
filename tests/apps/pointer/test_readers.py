"""Bad input gives a clear ValueError naming the file and line; good input reads exactly."""

from __future__ import annotations

import numpy as np
import pytest

from apps.pointer.readers import read_points_file, read_released_file, read_tsplib

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
