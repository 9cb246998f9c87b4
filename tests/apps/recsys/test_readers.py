"""The interaction readers (RecBole atomic, MovieLens, SASRec, Amazon) read each layout exactly,
gzipped or not, and every bad line raises an InputError naming the file and the line."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from apps.recsys.readers import (
    FORMATS,
    read_amazon,
    read_atomic,
    read_interactions,
    read_movielens,
    read_sasrec,
)
from core.train.errors import InputError


def write(folder: Path, name: str, text: str, zipped: bool = False) -> Path:
    path = folder / name
    path.write_bytes(gzip.compress(text.encode()) if zipped else text.encode())
    return path


def at(path: Path, line: int | None, message: str) -> str:
    """A pattern for an InputError message: ``path:line: message`` (``message`` a regex)."""
    return re.escape(f"{path}:{line}: " if line else f"{path}: ") + message


def check(log, users, items, timestamps, ratings, lines) -> None:
    assert log.users.tolist() == users and log.items.tolist() == items
    assert log.users.dtype.kind == log.items.dtype.kind == "U"
    assert (None if log.timestamps is None else log.timestamps.tolist()) == timestamps
    assert (None if log.ratings is None else log.ratings.tolist()) == ratings
    assert log.lines.dtype == np.int64 and log.lines.tolist() == lines


# --- RecBole atomic ------------------------------------------------------------------------------

ATOMIC = (
    "timestamp:float\titem_id:token\ttags:token_seq\tuser_id:token\trating:float\n"
    "881250949\t242\ta b\t196\t3\n"
    "\n"
    "891717742.5\tx-9\t\tu 7\t4.5\n"
)


@pytest.mark.parametrize("zipped", [False, True])
def test_atomic_finds_columns_in_any_order(tmp_path, zipped):
    path = write(tmp_path, "x.inter.gz" if zipped else "x.inter", ATOMIC, zipped)
    log = read_atomic(path)
    check(log, ["196", "u 7"], ["242", "x-9"], [881250949.0, 891717742.5], [3.0, 4.5], [2, 4])
    assert log.path == path and len(log) == 2


def test_atomic_without_time_or_rating(tmp_path):
    path = write(tmp_path, "x.inter", "item_id:token\tuser_id:token\ni1\tu1\ni2\tu1\n")
    check(read_atomic(path), ["u1", "u1"], ["i1", "i2"], None, None, [2, 3])


def test_shared_ml100k_atomic_sample(shared_data):
    log = read_interactions("atomic", shared_data / "recsys" / "ml-100k.inter")
    assert len(log) == 100_000
    assert len(np.unique(log.users)) == 943 and len(np.unique(log.items)) == 1682
    assert log.users[0] == "196" and log.items[0] == "242" and log.lines[0] == 2
    assert log.timestamps[0] == 881250949 and log.ratings[0] == 3
    assert set(np.unique(log.ratings)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert log.lines[-1] == 100_001 and np.isfinite(log.timestamps).all()


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("user_id:token\trating:float\n1\t2\n", 1, "no item_id:token column; the header has "
         "user_id:token, rating:float"),
        ("user_id\titem_id:token\n", 1, "header column 1 is 'user_id', expected name:type"),
        ("user_id:token\titem_id:float\n", 1, "column 'item_id' has type float, expected "
         "item_id:token"),
        ("user_id:token\titem_id:token\n1\t2\n1\t2\t3\n", 3, "3 tab-separated fields, expected 2"),
        ("user_id:token\titem_id:token\n1\t\n", 2, "empty item ID"),
        ("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t9\n1\t3\tnoon\n", 3,
         "timestamp 'noon' is not a number"),
        ("user_id:token\titem_id:token\trating:float\n1\t2\tnan\n", 2, "rating 'nan' is not finite"),
        ("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t-inf\n", 2, "timestamp '-inf' is "
         "not finite"),
    ],
)  # fmt: skip
def test_atomic_bad_input_names_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, "bad.inter", text)
    with pytest.raises(InputError, match=at(path, line, re.escape(message))):
        read_atomic(path)


def test_the_first_bad_line_is_reported(tmp_path):
    # line 3 has a bad number, line 4 a bad field count: the earlier one is named
    text = "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t5\n1\t3\tx\n1\t4\n"
    path = write(tmp_path, "x.inter", text)
    with pytest.raises(InputError, match=at(path, 3, "timestamp 'x'")):
        read_atomic(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "file is empty"),
        ("\n \n\n", "no interactions, only blank lines"),
        ("user_id:token\titem_id:token\n\n", "no interactions, expected lines after the header"),
    ],
)
def test_empty_files(tmp_path, text, message):
    path = write(tmp_path, "x.inter", text)
    with pytest.raises(InputError, match=at(path, None, message)):
        read_atomic(path)


def test_bad_utf8_names_its_line(tmp_path):
    path = tmp_path / "x.inter"
    path.write_bytes(b"user_id:token\titem_id:token\n1\t2\n1\t\xff3\n")
    with pytest.raises(InputError, match=at(path, 3, "byte 3 is not UTF-8")):
        read_atomic(path)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "x.inter.gz"
    path.write_bytes(
        gzip.compress(("user_id:token\titem_id:token\n" + "1\t2\n" * 500).encode())[:40]
    )
    with pytest.raises(InputError, match=at(path, None, "unreadable after line")):
        read_atomic(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_atomic(tmp_path / "absent.inter")


# --- MovieLens -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "lines"),
    [
        ("u.data", "196\t242\t3\t881250949\n\n186\t302\t3.5\t891717742\n", [1, 3]),
        ("ratings.dat", "196::242::3::881250949\n\n186::302::3.5::891717742\n", [1, 3]),
        ("ratings.csv", "userId,movieId,rating,timestamp\n196,242,3,881250949\n\n"
         "186,302,3.5,891717742\n", [2, 4]),
    ],
)  # fmt: skip
@pytest.mark.parametrize("zipped", [False, True])
def test_movielens_layouts(tmp_path, name, text, lines, zipped):
    path = write(tmp_path, name + (".gz" if zipped else ""), text, zipped)
    log = read_interactions("movielens", path)
    check(log, ["196", "186"], ["242", "302"], [881250949.0, 891717742.0], [3.0, 3.5], lines)


def test_movielens_keeps_ids_as_written(tmp_path):
    log = read_movielens(write(tmp_path, "ratings.dat", "007::0042::5::1\n"))
    assert log.users.tolist() == ["007"] and log.items.tolist() == ["0042"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("1::1::5::9\nu2::1::5::9\n", 2, "user ID 'u2' is not a whole number"),
        ("1\t1\t5\t9\n1\t1.5\t5\t9\n", 2, "item ID '1.5' is not a whole number"),
        ("1::1::5::9\n1::2::5\n", 2, "3 '::'-separated fields, expected 4"),
        ("1\t1\t5\tyesterday\n", 1, "timestamp 'yesterday' is not a number"),
        ("1::1::five::9\n", 1, "rating 'five' is not a number"),
        ("1::1::::9\n", 1, "empty rating"),
        ("1,1,5,9\n", 1, "first line '1,1,5,9' is none of MovieLens ratings"),
        ("userId,movieId,rating,timestamp\n1,2,3\n", 2, "3 comma-separated fields"),
    ],
)
def test_movielens_bad_input(tmp_path, text, line, message):
    path = write(tmp_path, "ratings.dat", text)
    with pytest.raises(InputError, match=at(path, line, re.escape(message))):
        read_movielens(path)


def test_movielens_header_only(tmp_path):
    path = write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n")
    with pytest.raises(InputError, match=at(path, None, "no interactions")):
        read_movielens(path)


# --- SASRec --------------------------------------------------------------------------------------


@pytest.mark.parametrize("zipped", [False, True])
def test_sasrec_pairs_in_file_order(tmp_path, zipped):
    path = write(tmp_path, "Beauty.txt", "1 10\n1 3\n\n2  10\n2\t7\r\n", zipped)
    log = read_sasrec(path)
    check(log, ["1", "1", "2", "2"], ["10", "3", "10", "7"], None, None, [1, 2, 4, 5])


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("1 2\n1 2 3\n", 2, "3 white-space-separated fields, expected 2 (user item)"),
        ("1 2\nA 2\n", 2, "user ID 'A' is not a whole number"),
        ("1 -2\n", 1, "item ID '-2' is not a whole number"),
    ],
)
def test_sasrec_bad_input(tmp_path, text, line, message):
    path = write(tmp_path, "ml-1m.txt", text)
    with pytest.raises(InputError, match=at(path, line, re.escape(message))):
        read_sasrec(path)


# --- Amazon --------------------------------------------------------------------------------------

RATINGS_2014 = (
    "A39HTATAQ9V7YF,0205616461,5.0,1369699200\nA3JM6GV9MNOF9X,B00004TMFE,3.0,1355443200\n"
)
RATINGS_2018 = (
    "0205616461,A39HTATAQ9V7YF,5.0,1369699200\nB00004TMFE,A3JM6GV9MNOF9X,3.0,1355443200\n"
)
USERS, ITEMS = ["A39HTATAQ9V7YF", "A3JM6GV9MNOF9X"], ["0205616461", "B00004TMFE"]


@pytest.mark.parametrize("text", [RATINGS_2014, RATINGS_2018], ids=["2014", "2018"])
@pytest.mark.parametrize("zipped", [False, True])
def test_amazon_ratings_csv_user_and_item_by_asin_shape(tmp_path, text, zipped):
    log = read_amazon(write(tmp_path, "ratings_Beauty.csv", text, zipped))
    check(log, USERS, ITEMS, [1369699200.0, 1355443200.0], [5.0, 3.0], [1, 2])


def test_amazon_ratings_csv_order_given(tmp_path):
    path = write(tmp_path, "r.csv", "u1,i1,4,100\nu2,i1,2,200\n")
    with pytest.raises(InputError, match=at(path, 1, "cannot tell the user from the item")):
        read_amazon(path)
    check(
        read_amazon(path, order="user,item"), ["u1", "u2"], ["i1", "i1"], [100, 200], [4, 2], [1, 2]
    )
    log = read_interactions("amazon", path, order="item,user")
    assert log.users.tolist() == ["i1", "i1"] and log.items.tolist() == ["u1", "u2"]


def test_amazon_2023_csv_milliseconds(tmp_path):
    text = "user_id,parent_asin,rating,timestamp\nAGKHLEW2SOWHNMFQIJGBECAF7INQ,B01CUPMQZE,4.0,1588687728923\n"
    check(read_amazon(write(tmp_path, "Beauty.csv", text)), ["AGKHLEW2SOWHNMFQIJGBECAF7INQ"],
          ["B01CUPMQZE"], [1588687728.923], [4.0], [2])  # fmt: skip


REVIEWS = (
    '{"reviewerID": "A39HTATAQ9V7YF", "asin": "0205616461", "overall": 5.0, '
    '"unixReviewTime": 1369699200, "reviewText": "Nice {brush}"}\n'
    "\n"
    "{'reviewerID': 'A3JM6GV9MNOF9X', 'asin': 'B00004TMFE', 'overall': 3.0, "
    "'unixReviewTime': 1355443200}\n"  # the 2014 files' loose JSON (a Python literal)
    '{"user_id": "AGKHLEW2", "asin": "B00YQ6X8EO", "parent_asin": "B00YQ6X8EO", "rating": 4, '
    '"timestamp": 1588687728923}\n'
    '{"user_id": "AGKHLEW2", "asin": "B081TJ8YS3", "parent_asin": null, "rating": 1.0, '
    '"timestamp": 1588615855070}\n'
)


@pytest.mark.parametrize("zipped", [False, True])
def test_amazon_json_lines_of_every_era(tmp_path, zipped):
    log = read_interactions("amazon", write(tmp_path, "reviews.json", REVIEWS, zipped))
    check(
        log,
        [*USERS, "AGKHLEW2", "AGKHLEW2"],
        [*ITEMS, "B00YQ6X8EO", "B081TJ8YS3"],
        [1369699200.0, 1355443200.0, 1588687728.923, 1588615855.07],
        [5.0, 3.0, 4.0, 1.0],
        [1, 3, 4, 5],
    )


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('{"reviewerID": "A1", "asin": "B1", "overall": 5, "unixReviewTime": 9}\n{"reviewerID": '
         '"A1", "asin": "B2", "overall": 5, \n', 2, "not JSON"),
        ('{"reviewerID": "A1", "overall": 5, "unixReviewTime": 9}\n', 1, "no 'asin'"),
        ('{"reviewerID": "A1", "asin": "B1", "overall": "five", "unixReviewTime": 9}\n', 1,
         "'overall' 'five' is not a number"),
        ('{"reviewerID": "A1", "asin": "B1", "overall": 5}\n', 1, "'unixReviewTime' is missing"),
        ('{"reviewerID": "A1", "asin": "B1", "overall": NaN, "unixReviewTime": 9}\n', 1,
         "'overall' 'nan' is not finite"),
        ('{"user_id": "A1", "rating": 5, "timestamp": 9}\n', 1, "no 'parent_asin' or 'asin'"),
        ('{"asin": "B1"}\n', 1, "review has no 'reviewerID' or 'user_id'"),
        ("{1, 2}\n", 1, "a set, expected a JSON object"),
        ("A39HTATAQ9V7YF,0205616461,5.0,1369699200\nA1,B1,5.0\n", 2, "3 comma-separated fields"),
        ("A39HTATAQ9V7YF,0205616461,5.0\n", 1, "3 comma-separated fields, expected 4 (user, item"),
        ("A39HTATAQ9V7YF,0205616461,5.0,1369699200\nA1,B1,5.0,soon\n", 2, "timestamp 'soon'"),
        ("user_id,rating,timestamp\n", 1, "header has no parent_asin"),
    ],
)  # fmt: skip
def test_amazon_bad_input(tmp_path, text, line, message):
    path = write(tmp_path, "Beauty.json", text)
    with pytest.raises(InputError, match=at(path, line, re.escape(message))):
        read_amazon(path)


# --- any format ----------------------------------------------------------------------------------


def test_read_interactions_picks_the_reader(tmp_path):
    assert FORMATS == ("atomic", "movielens", "sasrec", "amazon")
    path = write(tmp_path, "ml-1m.txt", "1 2\n")
    assert read_interactions("sasrec", path).items.tolist() == ["2"]
    with pytest.raises(InputError, match="unknown recsys format 'csv'; expected one of atomic"):
        read_interactions("csv", path)
    with pytest.raises(InputError, match="format 'sasrec' has no option"):
        read_interactions("sasrec", path, order="user,item")
    with pytest.raises(InputError, match="order must be"):
        read_interactions("amazon", path, order="sideways")
