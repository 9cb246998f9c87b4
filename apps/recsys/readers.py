"""Readers of the public sequential-recommendation interaction files, each returning
:class:`Interactions` (tokens as written, file order, nothing dropped), and
:func:`read_interactions`, which picks the reader by format name.

* ``atomic`` (:func:`read_atomic`): RecBole's atomic ``.inter`` file, tab-separated under a typed
  header (``user_id:token	item_id:token	rating:float	timestamp:float``, columns in any order,
  others ignored).
* ``movielens`` (:func:`read_movielens`): ML-100K ``u.data`` (``user	item	rating	timestamp``),
  ML-1M/10M ``ratings.dat`` (``user::item::rating::timestamp``), ML-20M/25M ``ratings.csv`` (header
  ``userId,movieId,rating,timestamp``). IDs are whole numbers.
* ``sasrec`` (:func:`read_sasrec`): the SASRec repository's ``ml-1m.txt`` / ``Beauty.txt``, one
  ``user item`` pair a line, already in time order per user, so no timestamps. IDs are whole numbers.
* ``amazon`` (:func:`read_amazon`): McAuley's Amazon reviews: the headerless ratings-only CSVs
  (2014 ``ratings_Beauty.csv`` is ``user,item,rating,timestamp``, 2018 ``Beauty.csv`` is
  ``item,user,rating,timestamp``), the 2023 CSVs (header ``user_id,parent_asin,rating,timestamp``)
  and the JSON-lines reviews (2014/2018 ``reviewerID``, ``asin``, ``overall``, ``unixReviewTime``;
  2023 ``user_id``, ``parent_asin``, ``rating``, ``timestamp`` in milliseconds, made seconds).

Any file may be gzipped. Timestamps are seconds. Bad input raises ``InputError`` naming the file and
the line, and what was expected (see :mod:`apps.recsys.textfiles`).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Iterator
from itertools import chain
from pathlib import Path
from typing import Any, Literal

from apps.recsys.interactions import Interactions
from apps.recsys.textfiles import (
    Layout,
    Row,
    collect,
    data_lines,
    layout_blocks,
    number,
    row_blocks,
)
from core.train.errors import InputError, input_file

FORMATS = ("atomic", "movielens", "sasrec", "amazon")

Lines = Iterator[tuple[int, str]]
_SECONDS = " (seconds since 1970)"


def _first_line(path: Path, what: str) -> tuple[tuple[int, str], Lines]:
    """The first non-blank line and the lines after it; a file of blank lines is an error."""
    lines = data_lines(path)
    first = next(lines, None)
    if first is None:
        raise InputError(f"{path}: no interactions, only blank lines (expected {what})")
    return first, lines


# --- RecBole atomic files ------------------------------------------------------------------------

_ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
_ATOMIC_COLUMNS = {"user_id": "token", "item_id": "token", "timestamp": "float", "rating": "float"}


def read_atomic(path: str | Path) -> Interactions:
    """A RecBole atomic ``.inter`` file: its typed header names the columns; ``user_id:token`` and
    ``item_id:token`` are required, ``timestamp:float`` and ``rating:float`` read when present."""
    what = "a RecBole atomic .inter file (tab-separated, header name:type)"
    path = input_file(path, what)
    (line, header), lines = _first_line(path, what)
    columns = _atomic_header(path, line, header)
    layout = Layout(
        separator="\t",
        width=len(header.split("\t")),
        user=columns["user_id"],
        item=columns["item_id"],
        time=columns.get("timestamp"),
        rating=columns.get("rating"),
        fields="tab-separated",
        names="(one per header column)",
    )
    return collect(
        path,
        layout_blocks(path, lines, layout),
        timed=layout.time is not None,
        rated=layout.rating is not None,
        what="lines after the header",
    )


def _atomic_header(path: Path, line: int, header: str) -> dict[str, int]:
    """Column index of each of user_id, item_id (required), timestamp and rating (when present)."""
    found: dict[str, tuple[int, str]] = {}
    for index, field in enumerate(header.split("\t")):
        name, colon, kind = field.strip().partition(":")
        if not colon or not name or kind not in _ATOMIC_TYPES:
            raise InputError(
                f"{path}:{line}: header column {index + 1} is {field!r}, expected name:type with "
                f"type one of {', '.join(_ATOMIC_TYPES)}"
            )
        if name in found:
            raise InputError(f"{path}:{line}: header column {index + 1} repeats {name!r}")
        found[name] = (index, kind)
    missing = [f"{name}:token" for name in ("user_id", "item_id") if name not in found]
    if missing:
        raise InputError(
            f"{path}:{line}: no {' or '.join(missing)} column; the header has "
            f"{', '.join(f'{name}:{kind}' for name, (_, kind) in found.items())}, expected "
            "user_id:token and item_id:token"
        )
    for name, kind in _ATOMIC_COLUMNS.items():
        if name in found and found[name][1] != kind:
            raise InputError(
                f"{path}:{line}: column {name!r} has type {found[name][1]}, expected {name}:{kind}"
            )
    return {name: found[name][0] for name in _ATOMIC_COLUMNS if name in found}


# --- MovieLens -----------------------------------------------------------------------------------

_MOVIELENS_HEADER = ["userId", "movieId", "rating", "timestamp"]


def read_movielens(path: str | Path) -> Interactions:
    """MovieLens ratings, the layout told by the first non-blank line: ``::`` → ``ratings.dat``
    (ML-1M/10M), a tab → ``u.data`` (ML-100K), the header ``userId,movieId,rating,timestamp`` →
    ``ratings.csv`` (ML-20M/25M)."""
    what = (
        "MovieLens ratings: u.data (user<tab>item<tab>rating<tab>timestamp), ratings.dat "
        "(user::item::rating::timestamp) or ratings.csv (header userId,movieId,rating,timestamp)"
    )
    path = input_file(path, what)
    first, lines = _first_line(path, what)
    line, text = first
    if "::" in text:
        separator, lines = "::", chain([first], lines)
    elif "\t" in text:
        separator, lines = "\t", chain([first], lines)
    elif [cell.strip() for cell in text.split(",")] == _MOVIELENS_HEADER:
        separator = ","
    else:
        raise InputError(f"{path}:{line}: first line {text[:60]!r} is none of {what}")
    shown = {"\t": "tab", "::": "'::'", ",": "comma"}[separator]
    layout = Layout(
        separator,
        4,
        user=0,
        item=1,
        time=3,
        rating=2,
        whole_ids=True,
        fields=f"{shown}-separated",
        names="(user, item, rating, timestamp)",
    )
    return collect(path, layout_blocks(path, lines, layout), timed=True, rated=True, what=what)


# --- SASRec text ---------------------------------------------------------------------------------


def read_sasrec(path: str | Path) -> Interactions:
    """The SASRec repository's ``user item`` lines (white-space separated whole numbers, in time
    order per user): no timestamps, no ratings."""
    what = "SASRec text: one 'user item' pair of whole numbers a line"
    path = input_file(path, what)
    layout = Layout(
        None, 2, user=0, item=1, whole_ids=True, fields="white-space-separated", names="(user item)"
    )
    rows = layout_blocks(path, data_lines(path), layout)
    return collect(path, rows, timed=False, rated=False, what=what)


# --- Amazon reviews ------------------------------------------------------------------------------

Order = Literal["auto", "user,item", "item,user"]


def read_amazon(path: str | Path, *, order: Order = "auto") -> Interactions:
    """Amazon reviews (2014, 2018 or 2023): JSON lines when the first character is ``{``, else a
    ratings CSV: with the 2023 header, or headerless with ``order`` saying which of the first two
    columns is the user; ``"auto"`` finds the item by its ASIN shape (10 capitals or digits)."""
    what = "Amazon reviews: JSON lines, or a ratings CSV (user,item,rating,timestamp)"
    path = input_file(path, what)
    if order not in ("auto", "user,item", "item,user"):
        raise InputError(f"order must be 'auto', 'user,item' or 'item,user', got {order!r}")
    first, rest = _first_line(path, what)
    if first[1].lstrip().startswith("{"):
        rows = row_blocks(_json_rows(path, chain([first], rest)))
    elif first[1].split(",")[0].strip() == "user_id":
        rows = layout_blocks(path, rest, _layout_2023(path, *first))
    else:
        user = 0 if order == "user,item" or (order == "auto" and _user_first(path, *first)) else 1
        names = ("(user, item", "(item, user")[user] + ", rating, timestamp)"
        layout = Layout(
            ",",
            4,
            user=user,
            item=1 - user,
            time=3,
            rating=2,
            fields="comma-separated",
            names=names,
        )
        rows = layout_blocks(path, chain([first], rest), layout)
    return collect(path, rows, timed=True, rated=True, what=what)


def _asin_like(token: str) -> bool:
    return len(token) == 10 and token.isascii() and token.isalnum() and token.upper() == token


def _user_first(path: Path, line: int, text: str) -> bool:
    """Whether a headerless ratings CSV starts with the user (2014) or the item (2018), by which of
    the first two fields of its first line looks like an ASIN."""
    fields = [field.strip() for field in text.split(",")]
    if len(fields) != 4:
        return True  # either way, the line's own error (its field count) is reported next
    if _asin_like(fields[0]) != _asin_like(fields[1]):
        return _asin_like(fields[1])
    raise InputError(
        f"{path}:{line}: cannot tell the user from the item in {text[:60]!r} (expected one ASIN, "
        "10 capitals or digits); give order='user,item' (2014 ratings_*.csv) or 'item,user' "
        "(2018 ratings CSVs)"
    )


def _layout_2023(path: Path, line: int, text: str) -> Layout:
    """The fields of a 2023 ratings CSV, by its header: user_id, parent_asin (else asin), rating,
    timestamp (milliseconds)."""
    names = [cell.strip() for cell in text.split(",")]
    wanted = ("user_id", "parent_asin" if "parent_asin" in names else "asin", "rating", "timestamp")
    missing = [name for name in wanted if name not in names]
    if missing:
        missing = ["parent_asin or asin" if name == "asin" else name for name in missing]
        raise InputError(
            f"{path}:{line}: header has no {', '.join(missing)}, expected "
            "user_id,parent_asin,rating,timestamp"
        )
    user, item, rating, time = (names.index(name) for name in wanted)
    return Layout(
        ",",
        len(names),
        user=user,
        item=item,
        time=time,
        rating=rating,
        divisor=1000.0,
        fields="comma-separated",
        names="(as in the header)",
    )


# keys of a review: user, items (first present wins), rating, time, time divisor (ms → s)
_REVIEW_KEYS = {
    "reviewerID": ("reviewerID", ("asin",), "overall", "unixReviewTime", 1.0),  # 2014, 2018
    "user_id": ("user_id", ("parent_asin", "asin"), "rating", "timestamp", 1000.0),  # 2023
}


def _json_rows(path: Path, lines: Lines) -> Iterator[Row]:
    """One review a line, as a JSON object (or the 2014 files' Python-literal "loose JSON")."""
    for line, text in lines:
        record = _record(path, line, text)
        era = next((key for key in _REVIEW_KEYS if key in record), None)
        if era is None:
            raise InputError(
                f"{path}:{line}: review has no 'reviewerID' or 'user_id', expected a reviewer key "
                "(2014/2018: reviewerID, asin, overall, unixReviewTime; 2023: user_id, "
                "parent_asin, rating, timestamp)"
            )
        user_key, item_keys, rating_key, time_key, divisor = _REVIEW_KEYS[era]
        user = _json_token(path, line, record, (user_key,))
        item = _json_token(path, line, record, item_keys)
        unit = " (milliseconds since 1970)" if divisor != 1 else _SECONDS
        yield (
            line,
            user,
            item,
            _json_number(path, line, record, time_key, unit) / divisor,
            _json_number(path, line, record, rating_key, ""),
        )


def _record(path: Path, line: int, text: str) -> dict[str, Any]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        try:
            record = ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise InputError(
                f"{path}:{line}: not JSON ({error.msg} at column {error.colno}), expected one "
                "review a line as a JSON object"
            ) from None
    if not isinstance(record, dict):
        raise InputError(f"{path}:{line}: a {type(record).__name__}, expected a JSON object")
    return record


def _json_token(path: Path, line: int, record: dict[str, Any], keys: tuple[str, ...]) -> str:
    """The first of ``keys`` present (not null or empty), which must be a non-empty string."""
    for key in keys:
        value = record.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{path}:{line}: {key!r} is {value!r}, expected an ID string")
        return value
    raise InputError(f"{path}:{line}: no {' or '.join(map(repr, keys))}, expected an ID string")


def _json_number(path: Path, line: int, record: dict[str, Any], key: str, unit: str) -> float:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        got = "missing" if key not in record else f"{value!r}"
        raise InputError(f"{path}:{line}: {key!r} is {got}, expected a number{unit}")
    return number(str(value), path, line, repr(key), unit)


# --- any format ----------------------------------------------------------------------------------

_READERS: dict[str, Callable[..., Interactions]] = {
    "atomic": read_atomic,
    "movielens": read_movielens,
    "sasrec": read_sasrec,
    "amazon": read_amazon,
}
_OPTIONS: dict[str, tuple[str, ...]] = {
    "atomic": (),
    "movielens": (),
    "sasrec": (),
    "amazon": ("order",),
}


def read_interactions(format: str, path: str | Path, **options: Any) -> Interactions:
    """Read ``path`` in ``format`` (one of :data:`FORMATS`); ``options`` go to its reader (only
    ``order`` for amazon)."""
    reader = _READERS.get(format)
    if reader is None:
        raise InputError(f"unknown recsys format {format!r}; expected one of {', '.join(FORMATS)}")
    unknown = sorted(set(options) - set(_OPTIONS[format]))
    if unknown:
        raise InputError(
            f"format {format!r} has no option(s) {', '.join(unknown)}; it takes "
            f"{', '.join(_OPTIONS[format]) or 'none'}"
        )
    return reader(path, **options)
