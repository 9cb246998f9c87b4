"""The METR-LA / PEMS-BAY reader: the h5 speeds, the DCRNN pickle aligned to them by sensor ID, the
locations CSV, and bad input named by file, row and column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from apps.traffic.metr import read_locations, read_metr
from core.train.errors import InputError
from tests.apps.traffic.samples import (
    ALIGNED_ADJ,
    H5_IDS,
    LOCATIONS,
    PICKLE_IDS,
    SPEEDS,
    TIMES,
    write,
    write_h5,
    write_pickle,
)


def test_metr_reads_speeds_timestamps_and_aligns_graph_and_locations(tmp_path):
    locations = write(tmp_path, "graph_sensor_locations.csv", LOCATIONS)
    series = read_metr(write_h5(tmp_path), write_pickle(tmp_path), locations)
    assert series.sensor_ids == H5_IDS
    assert series.values[..., 0].tolist() == SPEEDS
    assert np.allclose(series.adjacency, ALIGNED_ADJ)
    assert series.timestamps.dtype == np.dtype("datetime64[ns]")
    assert series.timestamps.tolist() == TIMES.to_numpy().astype("datetime64[ns]").tolist()
    assert series.interval_minutes == 5
    assert series.coordinates.tolist() == [[34.2, -118.2], [34.3, -118.3], [34.1, -118.1]]
    assert [p.name for p in series.files] == ["metr-la.h5", "adj_mx.pkl", locations.name]


def test_pems_bay_style_integer_columns_and_headerless_locations(tmp_path):
    h5 = write_h5(tmp_path, columns=[int(s) for s in H5_IDS], key="speed")
    bay = write(
        tmp_path,
        "graph_sensor_locations_bay.csv",
        "773869,37.1,-121.1\n767541,37.2,-121.2\n767542,37.3,-121.3\n",
    )
    series = read_metr(h5, write_pickle(tmp_path), bay)
    assert series.sensor_ids == H5_IDS and np.allclose(series.adjacency, ALIGNED_ADJ)
    assert series.coordinates[:, 0].tolist() == [37.1, 37.2, 37.3]


def test_metr_picks_the_frame_called_speed_among_several(tmp_path):
    h5 = write_h5(tmp_path, key="speed")
    pd.DataFrame({"x": [1.0]}).to_hdf(h5, key="other")
    assert read_metr(h5, write_pickle(tmp_path)).values[0, 0, 0] == 60.0
    pd.DataFrame({"x": [1.0]}).to_hdf(tmp_path / "two.h5", key="a")
    pd.DataFrame({"x": [1.0]}).to_hdf(tmp_path / "two.h5", key="b")
    with pytest.raises(InputError, match=r"two\.h5: 2 pandas frames \('a', 'b'\)"):
        read_metr(tmp_path / "two.h5", write_pickle(tmp_path))


def test_metr_sensor_missing_from_graph_names_it_and_both_files(tmp_path):
    ids = ["767542", "773869"]
    content = [ids, {s: i for i, s in enumerate(ids)}, np.eye(2)]
    with pytest.raises(InputError) as error:
        read_metr(write_h5(tmp_path), write_pickle(tmp_path, content))
    message = str(error.value)
    assert "adj_mx.pkl" in message and "metr-la.h5" in message
    assert "'767541' (column 2 of" in message


def test_metr_sensor_missing_from_locations(tmp_path):
    locations = write(tmp_path, "loc.csv", "sensor_id,latitude,longitude\n773869,34,-118\n")
    with pytest.raises(InputError) as error:
        read_metr(write_h5(tmp_path), write_pickle(tmp_path), locations)
    assert "loc.csv: has no sensor '767541' (column 2 of" in str(error.value)
    assert "metr-la.h5" in str(error.value)


def test_metr_nan_reading_names_row_and_column(tmp_path):
    speeds = [row[:] for row in SPEEDS]
    speeds[2][1] = np.nan
    with pytest.raises(InputError) as error:
        read_metr(write_h5(tmp_path, speeds), write_pickle(tmp_path))
    assert "metr-la.h5: row 3 (2012-03-01 00:10:00), column 2 ('767541'): nan" in str(error.value)


def test_metr_timestamps_must_increase(tmp_path):
    index = TIMES[[0, 1, 0, 3]]
    with pytest.raises(InputError, match=r"metr-la\.h5: row 3: timestamp .* is not after"):
        read_metr(write_h5(tmp_path, index=index), write_pickle(tmp_path))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"a": 1}, "holds a dict, expected the list [sensor_ids, sensor_id_to_ind, adj_mx]"),
        ([PICKLE_IDS, {}, np.eye(4)], "sensor_id_to_ind['767542'] is None"),
        (
            [PICKLE_IDS, {s: i for i, s in enumerate(PICKLE_IDS)}, np.eye(3)],
            "adj_mx is 3×3, expected 4×4",
        ),
        (
            [PICKLE_IDS, {s: i for i, s in enumerate(PICKLE_IDS)}, np.ones((4, 3))],
            "adj_mx has shape (4, 3)",
        ),
        (
            [PICKLE_IDS, {s: i for i, s in enumerate(PICKLE_IDS)}, np.diag([1, 1, np.inf, 1])],
            "adj_mx[2, 2] is inf",
        ),
    ],
)
def test_bad_adjacency_pickle(tmp_path, content, message):
    with pytest.raises(InputError) as error:
        read_metr(write_h5(tmp_path), write_pickle(tmp_path, content))
    assert "adj_mx.pkl: " in str(error.value) and message in str(error.value)


def test_unreadable_or_empty_metr_files(tmp_path):
    h5, graph = write_h5(tmp_path), write_pickle(tmp_path)
    with pytest.raises(InputError, match=r"junk\.pkl: not a readable pickle"):
        read_metr(h5, write(tmp_path, "junk.pkl", "not a pickle"))
    with pytest.raises(InputError, match=r"junk\.h5: not a readable pandas HDF5 file"):
        read_metr(write(tmp_path, "junk.h5", "not hdf5"), graph)
    with pytest.raises(InputError, match=r"empty\.h5: file is empty"):
        read_metr(write(tmp_path, "empty.h5", ""), graph)
    with pytest.raises(InputError, match=r"gone\.pkl: no such file"):
        read_metr(h5, tmp_path / "gone.pkl")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sensor_id,latitude,longitude\n773869,34\n", "loc.csv:2: row has 2 cells, expected 3"),
        (
            "sensor_id,latitude,longitude\n773869,north,-118\n",
            "loc.csv:2: column 2 (latitude): 'north' is not",
        ),
        ("773869,-118.2,34.2\n", "loc.csv:1: column 2 (latitude): -118.2 is outside -90..90"),
        ("773869,34,-118\n773869,35,-117\n", "loc.csv:2: sensor ID '773869' repeats entry 0"),
        ("id,lat,lon\n1,2,3\n", "loc.csv:1: the header lacks 'sensor_id', 'latitude', 'longitude'"),
    ],
)
def test_bad_locations(tmp_path, text, message):
    with pytest.raises(InputError) as error:
        read_locations(write(tmp_path, "loc.csv", text))
    assert message in str(error.value)
