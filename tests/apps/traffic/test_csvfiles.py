"""The CSV tables every CSV reader shares: bad input raises an InputError naming the file, the line
and the column, and big files take the fast path with the same result and messages."""

from __future__ import annotations

import numpy as np
import pytest

from apps.traffic import csvfiles
from apps.traffic.readers import read_tgcn
from core.train.errors import InputError
from tests.apps.traffic.samples import tgcn_files, write


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
    monkeypatch.setattr(csvfiles, "_FAST_FROM_BYTES", 0)
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
