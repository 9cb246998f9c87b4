"""The traffic readers read each public format exactly, and bad input raises an InputError naming
the file, the line (or row) and the column."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from apps.traffic import readers
from apps.traffic.readers import (
    read_locations,
    read_metr,
    read_npz,
    read_pems,
    read_pemsd7,
    read_series,
    read_tgcn,
    read_windows,
    stgcn_weights,
    write_npz,
)
from core.train.errors import InputError

SPEED = "a,b,c\n1,2,3\n4,5,6\n"
ADJ = "1,0.5,0\n0.5,1,0\n0,0.25,1\n"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def tgcn_files(folder: Path, speed: str = SPEED, adj: str = ADJ) -> tuple[Path, Path]:
    return write(folder, "los_speed.csv", speed), write(folder, "los_adj.csv", adj)


# --- T-GCN CSVs and the CSV validation every CSV reader shares -----------------------------------


def test_tgcn_reads_readings_ids_and_adjacency(tmp_path):
    series = read_tgcn(*tgcn_files(tmp_path, SPEED + "\n\n"))  # trailing blank lines hold nothing
    assert series.sensor_ids == ["a", "b", "c"]
    assert series.values.dtype == np.float32 and series.values.shape == (2, 3, 1)
    assert series.values[..., 0].tolist() == [[1, 2, 3], [4, 5, 6]]
    assert series.adjacency.tolist() == [[1, 0.5, 0], [0.5, 1, 0], [0, 0.25, 1]]
    assert series.interval_minutes == 5 and series.timestamps is None
    assert [p.name for p in series.files] == ["los_speed.csv", "los_adj.csv"]


def test_tgcn_shenzhen_files_are_15_minutes_apart(tmp_path):
    speed = write(tmp_path, "sz_speed.csv", SPEED)
    adj = write(tmp_path, "sz_adj.csv", ADJ)
    assert read_tgcn(speed, adj).interval_minutes == 15
    assert read_tgcn(speed, adj, interval_minutes=10).interval_minutes == 10


@pytest.mark.parametrize(
    ("speed", "message"),
    [
        ("a,b,c\n1,2,3\n4,5\n", "los_speed.csv:3: row has 2 cells, expected 3 (one per sensor"),
        ("a,b,c\n1,2,3\n4,5,6,7\n", "los_speed.csv:3: row has 4 cells, expected 3"),
        ("a,b,c\n1,2,3\n4,abc,6\n", "los_speed.csv:3: column 2 ('b'): 'abc' is not a number"),
        ("a,b,c\n1,2,\n", "los_speed.csv:2: column 3 ('c'): empty cell"),
        ("a,b,c\n1,2,3\nnan,5,6\n", "los_speed.csv:3: column 1 ('a'): 'nan' is not a finite"),
        ("a,b,c\n1,2,3\n\n4,5,inf\n", "los_speed.csv:4: column 3 ('c'): 'inf' is not a finite"),
        ("a,b,a\n1,2,3\n", "los_speed.csv:1: column 3: sensor ID 'a' repeats column 1"),
        ("a,,c\n1,2,3\n", "los_speed.csv:1: column 2: empty sensor ID"),
        ("1.5,2.25,3\n4,5,6\n", "los_speed.csv:1: the first row looks like readings"),
        ("a,b,c\n\n", "los_speed.csv: no rows of numbers after the header"),
        ("\n  \n", "los_speed.csv: no rows, expected a header row of sensor IDs"),
        ("", "los_speed.csv: file is empty"),
    ],
)
def test_bad_speed_csv_names_file_line_and_column(tmp_path, speed, message):
    with pytest.raises(InputError) as error:
        read_tgcn(*tgcn_files(tmp_path, speed=speed))
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("adj", "message"),
    [
        ("1,0,0\n0,1,0\n", "los_adj.csv: 2 rows of 3 cells; an adjacency matrix is square"),
        (
            "1,0\n0,1\n",
            "los_adj.csv: adjacency is 2×2, expected 3×3 (one row and column per sensor",
        ),
        ("1,0,0\n0,1\n0,0,1\n", "los_adj.csv:2: row has 2 cells, expected 3 (as on line 1)"),
        ("1,0,0\n0,1,x\n0,0,1\n", "los_adj.csv:2: column 3: 'x' is not a number"),
        ("1,0,0\n0,1,0\n\n-1,0,1\n", "los_adj.csv:4: column 1: weight -1 is negative"),
        ("1,0,0\n0,NaN,0\n0,0,1\n", "los_adj.csv:2: column 2: 'NaN' is not a finite number"),
        ("", "los_adj.csv: file is empty"),
    ],
)
def test_bad_adjacency_csv_names_file_line_and_column(tmp_path, adj, message):
    with pytest.raises(InputError) as error:
        read_tgcn(*tgcn_files(tmp_path, adj=adj))
    assert message in str(error.value)


def test_missing_file_is_an_input_error_naming_the_path(tmp_path):
    speed, _ = tgcn_files(tmp_path)
    with pytest.raises(InputError, match=r"nowhere_adj\.csv: no such file"):
        read_tgcn(speed, tmp_path / "nowhere_adj.csv")
    with pytest.raises(InputError, match="not a regular file"):
        read_tgcn(tmp_path, speed)


def test_big_csvs_take_the_fast_path_with_the_same_result_and_messages(tmp_path, monkeypatch):
    speed, adj = tgcn_files(tmp_path, "\ufeffa,b,c\n1.5,2,3e1\n\n4,5,6\n")  # BOM, blank line
    careful = read_tgcn(speed, adj)
    monkeypatch.setattr(readers, "_FAST_FROM_BYTES", 0)
    fast = read_tgcn(speed, adj)
    assert careful.sensor_ids == fast.sensor_ids == ["a", "b", "c"]
    assert np.array_equal(careful.values, fast.values)
    assert fast.values[..., 0].tolist() == [[1.5, 2, 30], [4, 5, 6]]
    for bad, message in [
        ("a,b,c\n1,2,3\n4,True,6\n", "los_speed.csv:3: column 2 ('b'): 'True' is not a number"),
        ("a,b,c\n1,2,3\n4,5\n", "los_speed.csv:3: row has 2 cells, expected 3"),
        ("a,b,c\n1,,3\n", "los_speed.csv:2: column 2 ('b'): empty cell"),
    ]:
        write(tmp_path, "los_speed.csv", bad)
        with pytest.raises(InputError) as error:
            read_tgcn(speed, adj)
        assert message in str(error.value)


def test_shared_los_angeles_files(shared_data):
    folder = shared_data / "traffic"
    series = read_tgcn(folder / "los_speed.csv", folder / "los_adj.csv")
    assert series.values.shape == (2016, 207, 1) and series.adjacency.shape == (207, 207)
    assert len(series.sensor_ids) == len(set(series.sensor_ids)) == 207
    assert series.sensor_ids[:3] == ["773869", "767541", "767542"]
    assert np.isfinite(series.values).all() and (series.values > 0).all()
    assert np.allclose(series.values[0, :3, 0], [64.375, 67.625, 67.125])
    assert np.allclose(np.diag(series.adjacency), 1.0)
    assert series.adjacency[0, 13] == pytest.approx(0.260935932)


# --- PeMSD7(M) -----------------------------------------------------------------------------------

DISTANCES = [[0, 2000, 3000], [2500, 0, 2500], [3000, 1000, 0]]
# d = W / 10000; exp(-d²/0.1): 0.2 → e^-0.4, 0.25 → e^-0.625, 0.1 → e^-0.1 (kept, ≥ 0.5);
# 0.3 → e^-0.9 = 0.4066 (< 0.5, dropped); the diagonal is 0
WEIGHTS = [
    [0.0, 0.6703200460, 0.0],
    [0.5352614285, 0.0, 0.5352614285],
    [0.0, 0.9048374180, 0.0],
]


def matrix_csv(matrix) -> str:
    return "".join(",".join(f"{v:g}" for v in row) + "\n" for row in matrix)


def test_stgcn_weights_by_hand():
    assert np.allclose(stgcn_weights(np.array(DISTANCES, dtype=float)), WEIGHTS, atol=1e-9)
    loose = stgcn_weights(np.array(DISTANCES, dtype=float), epsilon=0.4)
    assert loose[0, 2] == loose[2, 0] == pytest.approx(0.4065696597)
    kept = stgcn_weights(np.array(DISTANCES, dtype=float))[0, 1]  # a weight equal to ε is kept
    assert stgcn_weights(np.array(DISTANCES, dtype=float), epsilon=kept)[0, 1] == kept
    wide = stgcn_weights(np.array(DISTANCES, dtype=float), sigma2=1.0)
    assert wide[0, 2] == pytest.approx(np.exp(-0.09)) and wide[1, 1] == 0


def test_pemsd7_reads_speeds_and_converts_distances(tmp_path):
    values = write(tmp_path, "V_228.csv", "60,61.5,62\n63,64,65\n")
    graph = write(tmp_path, "W_228.csv", matrix_csv(DISTANCES))
    series = read_pemsd7(values, graph)
    assert series.sensor_ids == ["0", "1", "2"]
    assert series.values[..., 0].tolist() == [[60, 61.5, 62], [63, 64, 65]]
    assert np.allclose(series.adjacency, WEIGHTS, atol=1e-6)
    raw = read_pemsd7(values, graph, distances=False)
    assert raw.adjacency.tolist() == DISTANCES


def test_pemsd7_refuses_bad_graphs(tmp_path):
    values = write(tmp_path, "V_228.csv", "60,61,62\n63,64,65\n")
    binary = write(tmp_path, "W_228.csv", "0,1,0\n1,0,1\n0,1,0\n")
    with pytest.raises(InputError, match=r"W_228\.csv: every entry is 0 or 1.*distances=False"):
        read_pemsd7(values, binary)
    assert read_pemsd7(values, binary, distances=False).adjacency[0].tolist() == [0, 1, 0]
    write(tmp_path, "W_228.csv", "0,10,20\n10,0,-5\n20,5,0\n")
    with pytest.raises(InputError, match=r"W_228\.csv:2: column 3: weight -5 is negative"):
        read_pemsd7(values, binary)
    write(tmp_path, "W_228.csv", "0,10\n10,0\n")
    with pytest.raises(InputError, match=r"W_228\.csv: adjacency is 2×2, expected 3×3"):
        read_pemsd7(values, binary)


def test_pemsd7_bad_readings(tmp_path):
    graph = write(tmp_path, "W_228.csv", matrix_csv(DISTANCES))
    values = write(tmp_path, "V_228.csv", "60,61,62\n63,64\n")
    with pytest.raises(
        InputError, match=r"V_228\.csv:2: row has 2 cells, expected 3 \(as on line 1"
    ):
        read_pemsd7(values, graph)
    write(tmp_path, "V_228.csv", "60,61,62\n63,64,-\n")
    with pytest.raises(InputError, match=r"V_228\.csv:2: column 3: '-' is not a number"):
        read_pemsd7(values, graph)


# --- METR-LA / PEMS-BAY --------------------------------------------------------------------------

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


# --- PEMS03/04/07/08 -----------------------------------------------------------------------------

EDGES = "from,to,cost\n0,1,100.5\n1,2,200\n3,0,50\n"


def pems_files(folder: Path, edges: str = EDGES, data=None) -> tuple[Path, Path]:
    values = folder / "PEMS04.npz"
    np.savez(values, data=np.arange(36.0).reshape(3, 4, 3) if data is None else data)
    return values, write(folder, "PEMS04.csv", edges)


def test_pems_reads_data_and_binary_or_distance_edges(tmp_path):
    values, graph = pems_files(tmp_path)
    series = read_pems(values, graph)
    assert series.values.shape == (3, 4, 3) and series.values[1, 2].tolist() == [18, 19, 20]
    assert series.sensor_ids == ["0", "1", "2", "3"]
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 2] = expected[3, 0] = 1  # directed: [1, 0] stays 0
    assert series.adjacency.tolist() == expected.tolist()
    distance = read_pems(values, graph, weights="distance", channels=[2])
    assert distance.adjacency[0, 1] == 100.5 and distance.adjacency[3, 0] == 50
    assert distance.adjacency[1, 0] == 0 and distance.values[..., 0].tolist()[0] == [2, 5, 8, 11]


def test_pems03_ids_map_through_the_id_file(tmp_path):
    values, graph = pems_files(tmp_path, "from,to,cost\n317842,318120,1.5\n311903,317842,2\n")
    ids = write(tmp_path, "PEMS03.txt", "311903\n317842\n318120\n318000\n")
    series = read_pems(values, graph, ids_file=ids)
    assert series.sensor_ids == ["311903", "317842", "318120", "318000"]
    assert np.argwhere(series.adjacency).tolist() == [[0, 1], [1, 2]]
    with pytest.raises(
        InputError, match=r"PEMS04\.csv:2: column 1 \('from'\): sensor index 317842 is out"
    ):
        read_pems(values, graph)


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        ("src,dst,w\n0,1,1\n", "PEMS04.csv:1: header 'src,dst,w', expected 'from,to,cost'"),
        ("from,to,cost\n0,1,1\n1,2\n", "PEMS04.csv:3: row has 2 cells, expected 3"),
        (
            "from,to,cost\n0,1,1\n1,x,2\n",
            "PEMS04.csv:3: column 2 ('to'): 'x' is not a sensor index",
        ),
        (
            "from,to,cost\n0,1,far\n",
            "PEMS04.csv:2: column 3 ('cost'): 'far' is not a finite number",
        ),
        (
            "from,to,cost\n0,4,1\n",
            "PEMS04.csv:2: column 2 ('to'): sensor index 4 is out of range 0..3",
        ),
        (
            "from,to,cost\n0,1,1\n0,1,2\n",
            "PEMS04.csv:3: edge 0→1 again, with cost 2 (line 2 gave 1)",
        ),
        ("from,to,cost\n", "PEMS04.csv: no edges after the header"),
    ],
)
def test_bad_pems_edges(tmp_path, edges, message):
    with pytest.raises(InputError) as error:
        read_pems(*pems_files(tmp_path, edges))
    assert message in str(error.value)


def test_bad_pems_data(tmp_path):
    data = np.ones((3, 4, 3))
    data[2, 1, 0] = np.nan
    with pytest.raises(InputError, match=r"PEMS04\.npz: data\[2, 1, 0\] is nan"):
        read_pems(*pems_files(tmp_path, data=data))
    with pytest.raises(InputError, match=r"PEMS04\.npz: channel 3 does not exist.*0\.\.2"):
        read_pems(*pems_files(tmp_path), channels=[3])
    values, graph = pems_files(tmp_path)
    np.savez(values, flow=np.ones((3, 4, 1)))
    with pytest.raises(InputError, match=r"PEMS04\.npz: no array 'data'"):
        read_pems(values, graph)
    ids = write(tmp_path, "PEMS03.txt", "1\n2\n3\n")
    with pytest.raises(InputError, match=r"PEMS03\.txt: 3 sensor IDs, expected 4"):
        read_pems(*pems_files(tmp_path), ids_file=ids)


# --- our npz -------------------------------------------------------------------------------------


def test_npz_round_trip_keeps_everything(tmp_path):
    locations = write(tmp_path, "loc.csv", LOCATIONS)
    series = read_metr(write_h5(tmp_path), write_pickle(tmp_path), locations)
    out = write_npz(series, tmp_path / "out.data")  # the exact name, no ".npz" appended
    assert out.is_file() and out.name == "out.data"
    back = read_npz(out)
    assert np.array_equal(back.values, series.values)
    assert np.array_equal(back.adjacency, series.adjacency)
    assert back.sensor_ids == H5_IDS
    assert np.array_equal(back.timestamps, series.timestamps)
    assert np.array_equal(back.coordinates, series.coordinates)
    assert back.interval_minutes == 5 and back.files == [out]


def test_npz_mask_zeroes_unobserved_readings_and_int_timestamps(tmp_path):
    values = np.array([[1.0, np.nan], [3.0, 4.0], [5.0, 6.0]])
    path = tmp_path / "own.npz"
    np.savez(
        path,
        values=values,
        adjacency=np.eye(2),
        mask=np.array([[True, False], [False, True], [True, True]]),
        timestamps=np.array([0, 900, 1800], dtype=np.int64),
        sensor_ids=np.array([17, 4]),
    )
    series = read_npz(path)
    assert series.values[..., 0].tolist() == [[1, 0], [0, 4], [5, 6]]
    assert series.sensor_ids == ["17", "4"] and series.interval_minutes == 15
    assert series.timestamps[1] == np.datetime64("1970-01-01T00:15", "ns")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"values": [[1.0, np.inf]], "adjacency": np.eye(2)}, "own.npz: values[0, 1, 0] is inf"),
        (
            {"values": np.ones((2, 3)), "adjacency": np.eye(2)},
            "own.npz: adjacency is 2×2, expected 3×3",
        ),
        ({"values": np.ones((2, 2)), "adjacency": np.ones((2, 3))}, "adjacency has shape (2, 3)"),
        ({"values": np.ones((2, 2)), "adjacency": -np.eye(2)}, "adjacency[0, 0] = -1 is negative"),
        ({"values": np.ones((2, 2))}, "own.npz: no array 'adjacency'"),
        (
            {"values": np.ones((2, 2)), "adjacency": np.eye(2), "speed": [1]},
            "unknown array(s) 'speed'",
        ),
        (
            {"values": np.ones((2, 2)), "adjacency": np.eye(2), "sensor_ids": ["a"]},
            "sensor_ids has shape (1,), expected [2]",
        ),
        (
            {"values": np.ones((2, 2)), "adjacency": np.eye(2), "mask": np.ones((2, 3), bool)},
            "mask has shape (2, 3)",
        ),
        (
            {"values": np.ones((2, 2)), "adjacency": np.eye(2), "timestamps": [5, 5]},
            "timestamps[1]: timestamp",
        ),
        (
            {"values": np.array([["a", "b"]]), "adjacency": np.eye(2)},
            "values has dtype <U1, expected numbers",
        ),
    ],
)
def test_bad_npz(tmp_path, arrays, message):
    path = tmp_path / "own.npz"
    np.savez(path, **{key: np.asarray(value) for key, value in arrays.items()})
    with pytest.raises(InputError) as error:
        read_npz(path)
    assert message in str(error.value)


def test_npz_that_is_not_an_archive(tmp_path):
    with pytest.raises(InputError, match=r"own\.npz: not an \.npz archive"):
        read_npz(write(tmp_path, "own.npz", "values,adjacency\n"))
    np.save(tmp_path / "one.npy", np.ones(3))
    with pytest.raises(InputError, match=r"one\.npy: not an \.npz archive"):
        read_npz(tmp_path / "one.npy")


# --- read_series ---------------------------------------------------------------------------------


def test_read_series_dispatches_and_converts(tmp_path):
    speed, adj = tgcn_files(tmp_path)
    series = read_series("tgcn", speed, adj, interval_minutes=10)
    assert series.interval_minutes == 10 and series.sensor_ids == ["a", "b", "c"]
    converted = read_series("npz", write_npz(series, tmp_path / "los.npz"))
    assert np.array_equal(converted.values, series.values) and converted.interval_minutes == 10
    values, graph = pems_files(tmp_path)
    assert read_series("pems", values, graph, channels=[0]).values.shape == (3, 4, 1)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s, a: read_series("csv", s, a), "unknown traffic format 'csv'"),
        (lambda s, a: read_series("tgcn", s), "format 'tgcn' needs a graph file"),
        (
            lambda s, a: read_series("tgcn", s, a, sigma2=1.0),
            "format 'tgcn' has no option(s) 'sigma2'",
        ),
        (
            lambda s, a: read_series("tgcn", s, a, s),
            "sensor locations are read only for format 'metr'",
        ),
        (lambda s, a: read_series("npz", s, a), "an npz holds its own adjacency"),
    ],
)
def test_read_series_refuses_bad_requests(tmp_path, call, message):
    with pytest.raises(InputError) as error:
        call(*tgcn_files(tmp_path))
    assert message in str(error.value)


# --- prediction windows --------------------------------------------------------------------------

MODEL_IDS = ["a", "b", "c"]


def test_csv_windows_reorder_columns_and_slide(tmp_path):
    # columns b, a, c; row t holds 10t + 1 for a, 10t + 2 for b, 10t + 3 for c
    path = write(tmp_path, "recent.csv", "b,a,c\n2,1,3\n12,11,13\n22,21,23\n32,31,33\n")
    x, y = read_windows(path, MODEL_IDS, history=2, channels=1)
    assert y is None and x.dtype == np.float32 and x.shape == (3, 2, 3, 1)
    assert x[0, :, :, 0].tolist() == [[1, 2, 3], [11, 12, 13]]
    assert x[2, :, :, 0].tolist() == [[21, 22, 23], [31, 32, 33]]


@pytest.mark.parametrize(
    ("text", "history", "channels", "message"),
    [
        ("a,b,d\n1,2,3\n", 1, 1, "recent.csv: the header row lacks 1 of the model's sensors: 'c'"),
        ("a,b,c,e\n1,2,3,4\n", 1, 1, "has 1 sensors the model does not know: 'e'"),
        ("a,b,c\n1,2,3\n", 2, 1, "recent.csv: 1 rows of readings, need at least 2"),
        ("a,b,c\n1,2,3\n", 1, 2, "recent.csv: a CSV holds one reading per sensor and step"),
        ("a,b,c\n1,2,3\n4,5,x\n", 1, 1, "recent.csv:3: column 3 ('c'): 'x' is not a number"),
    ],
)
def test_bad_csv_windows(tmp_path, text, history, channels, message):
    with pytest.raises(InputError) as error:
        read_windows(write(tmp_path, "recent.csv", text), MODEL_IDS, history, channels)
    assert message in str(error.value)


def test_npz_windows_with_targets_and_sensor_order(tmp_path):
    x = np.arange(2 * 4 * 3, dtype=np.float64).reshape(2, 4, 3)  # [S, history, N], C = 1
    y = np.arange(2 * 5 * 3, dtype=np.float64).reshape(2, 5, 3, 1) + 100
    path = tmp_path / "windows.npz"
    np.savez(path, x=x, y=y, sensor_ids=np.array(["c", "a", "b"]), x_offsets=np.arange(4))
    got_x, got_y = read_windows(path, MODEL_IDS, history=4, channels=1)
    assert got_x.shape == (2, 4, 3, 1) and got_y.shape == (2, 5, 3)
    assert got_x[0, 0, :, 0].tolist() == [1, 2, 0]  # file order c, a, b → model order a, b, c
    assert got_y[1, 4].tolist() == [y[1, 4, 1, 0], y[1, 4, 2, 0], y[1, 4, 0, 0]]
    np.savez(path, x=x)
    assert read_windows(path, MODEL_IDS, history=4, channels=1)[1] is None


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.ones((2, 3, 3, 1))}, "x has shape (2, 3, 3, 1), expected [S, 4, 3, 1]"),
        ({"x": np.ones((2, 4, 2))}, "x has shape (2, 4, 2), expected [S, 4, 3, 1]"),
        (
            {"x": np.ones((2, 4, 3)), "y": np.ones((3, 5, 3))},
            "y has shape (3, 5, 3), expected [2, horizon, 3]",
        ),
        ({"x": np.ones((2, 4, 3)), "y": np.ones((2, 5, 3, 2))}, "y has shape (2, 5, 3, 2)"),
        ({"x": np.full((2, 4, 3), np.nan)}, "windows.npz: x[0, 0, 0, 0] is nan"),
        (
            {"x": np.ones((2, 4, 3)), "sensor_ids": np.array(["a", "b", "z"])},
            "sensor_ids lacks 1 of the model's sensors: 'c'",
        ),
        ({"x": np.ones((2, 4, 3)), "extra": np.ones(1)}, "unknown array(s) 'extra'"),
        ({"y": np.ones((2, 5, 3))}, "no array 'x'"),
    ],
)
def test_bad_npz_windows(tmp_path, arrays, message):
    path = tmp_path / "windows.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError) as error:
        read_windows(path, MODEL_IDS, history=4, channels=1)
    assert message in str(error.value)


def test_windows_file_kinds(tmp_path):
    with pytest.raises(InputError, match=r"w\.txt: windows are read from \.npz or \.csv"):
        read_windows(write(tmp_path, "w.txt", "1"), MODEL_IDS, 1, 1)
    with pytest.raises(InputError, match=r"gone\.npz: no such file"):
        read_windows(tmp_path / "gone.npz", MODEL_IDS, 1, 1)
