"""The public-format readers (T-GCN, PeMSD7(M), PEMS03/04/07/08) read each format exactly, bad input
raises an InputError naming the file, the line (or row) and the column, and read_series picks the
reader by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from apps.traffic.npzfiles import write_npz
from apps.traffic.readers import read_pems, read_pemsd7, read_series, read_tgcn, stgcn_weights
from core.train.errors import InputError
from tests.apps.traffic.samples import ADJ, SPEED, tgcn_files, write

# --- T-GCN ---------------------------------------------------------------------------------------


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
