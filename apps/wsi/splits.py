"""Which slides train, validate and test: a split file (CLAM's ``splits_k.csv``, a ``slide_id,split``
CSV, or a JSON of lists as ACMIL writes them), a seeded stratified cross-validation fold, or a seeded
stratified holdout; :func:`choose_split` picks one and says which in a :class:`SplitChoice` (written
into results.json, so a run can be repeated).

A split is ``{"train": [...], "val": [...], "test": [...]}`` of slide ids, each slide in at most one
list. Bad input raises ``InputError`` naming the file (and line or key) and what was expected; slides
in no split are left out, counted and logged.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from apps.wsi.readers import class_names, csv_rows, some_names
from core.train.errors import InputError, input_file

logger = logging.getLogger("apps.wsi")

SPLITS = ("train", "val", "test")
_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_EXPECTED_KEYS = (
    "train, val (or valid, validation) and test, or ACMIL's train_names, val_names and test_names"
)

Split = dict[str, list[str]]
Entry = tuple[str, str, int | str]  # (split, slide id, CSV line or JSON "'key' item i")


@dataclass(frozen=True)
class SplitChoice:
    """How the split was made, for results.json: ``kind`` is "file" (``file`` read),
    "cross_validation" (fold ``fold`` of ``folds`` as test, ``seed``, ``val_fraction``) or "holdout"
    (``seed``, ``val_fraction``, ``test_fraction``); ``counts`` are the slides in each split."""

    kind: Literal["file", "cross_validation", "holdout"]
    file: str | None = None
    folds: int | None = None
    fold: int | None = None
    seed: int | None = None
    val_fraction: float | None = None
    test_fraction: float | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The choice as plain JSON-ready values."""
        return asdict(self)


def choose_split(
    slide_ids: Sequence[str],
    labels: Sequence[str],
    *,
    split_file: str | Path | None = None,
    folds: int = 0,
    fold: int = 0,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> tuple[Split, SplitChoice]:
    """The split and how it was made: ``split_file`` when given, else cross-validation fold ``fold``
    when ``folds`` > 0, else a stratified holdout. ``labels`` align with ``slide_ids``."""
    if split_file is not None:
        split = read_split_file(split_file, slide_ids)
        choice = SplitChoice("file", file=str(split_file))
    elif folds < 0:
        raise InputError(f"folds is {folds}, expected 0 (no cross-validation) or at least 2")
    elif folds > 0:
        split = cross_validation_split(slide_ids, labels, folds, fold, seed, val_fraction)
        choice = SplitChoice(
            "cross_validation", folds=folds, fold=fold, seed=seed, val_fraction=val_fraction
        )
    else:
        split = holdout_split(slide_ids, labels, seed, val_fraction, test_fraction)
        choice = SplitChoice(
            "holdout", seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
        )
    counts = {name: len(split[name]) for name in SPLITS}
    logger.info("split (%s): %s", choice.kind, counts)
    return split, replace(choice, counts=counts)


# --- split files ---------------------------------------------------------------------------------


def read_split_file(path: str | Path, slide_ids: Iterable[str]) -> Split:
    """A split file → ``{"train", "val", "test"}`` lists in file order. JSON: an object of lists
    keyed ``train``/``val``/``test`` (``valid``, ``validation`` for val) or ACMIL's ``*_names``; CSV:
    CLAM's ``splits_k.csv`` (an index column, then columns train, val, test of slide ids padded with
    empty cells), CLAM's ``splits_k_bool.csv`` (slide ids, then True/False columns) or rows of
    ``slide_id,split``. Every listed slide must be among ``slide_ids`` (the slides with features)."""
    what = "a split file (.json of train/val/test lists, or .csv: CLAM's splits_k.csv or slide_id,split)"
    path = input_file(path, what)
    suffix = path.suffix.lower()
    if suffix == ".json":
        entries = _json_entries(path)
    elif suffix == ".csv":
        entries = _csv_entries(path)
    else:
        raise InputError(f"{path}: suffix {path.suffix!r}, expected {what}")
    return _assemble(path, entries, list(slide_ids))


def _split_name(text: str) -> str | None:
    """``train``/``val``/``test`` for a split's name or alias (``valid``, ``val_names``), else None."""
    text = text.strip().lower()
    return _ALIASES.get(text.removesuffix("_names"))


def _json_entries(path: Path) -> list[Entry]:
    """The listed slides of a JSON split file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(
            f"{path}: not JSON ({error}); expected an object of split lists"
        ) from error
    if not isinstance(data, dict):
        raise InputError(f"{path}: a JSON {type(data).__name__}, expected an object of split lists")
    entries: list[Entry] = []
    keys: dict[str, str] = {}
    for key, ids in data.items():
        split = _split_name(key)
        if split is None:
            raise InputError(f"{path}: unknown split {key!r}; expected the keys {_EXPECTED_KEYS}")
        if split in keys:
            raise InputError(
                f"{path}: keys {keys[split]!r} and {key!r} both give the {split} split"
            )
        keys[split] = key
        if not isinstance(ids, list) or not all(
            isinstance(slide, str) and slide.strip() for slide in ids
        ):
            raise InputError(f"{path}: {key!r} is not a list of slide ids (non-empty strings)")
        entries += [(split, slide.strip(), f"{key!r} item {i}") for i, slide in enumerate(ids)]
    return entries


def _csv_entries(path: Path) -> list[Entry]:
    """The listed slides of a CSV split file, in whichever of its layouts the header shows."""
    rows = csv_rows(path)
    line, header = next(rows, (1, []))
    names = [cell.lower() for cell in header]
    if "slide_id" in names and "split" in names:
        return list(_slide_split_rows(path, rows, names.index("slide_id"), names.index("split")))
    columns = _split_columns(path, line, header)
    table = list(rows)
    for row_line, cells in table:
        if len(cells) > len(header):
            raise InputError(
                f"{path}:{row_line}: {len(cells)} fields, expected at most {len(header)} (the header's)"
            )
    if 0 not in columns and _all_booleans(table, columns):
        return _boolean_rows(path, table, columns)
    return [
        (split, cells[index], row_line)
        for row_line, cells in table
        for index, split in columns.items()
        if index < len(cells) and cells[index]
    ]


def _split_columns(path: Path, line: int, header: list[str]) -> dict[int, str]:
    """Column index → split of a CLAM-style header; column 0 may be an index column."""
    columns = {index: _split_name(name) for index, name in enumerate(header)}
    found = {index: split for index, split in columns.items() if split is not None}
    if not found:
        raise InputError(
            f"{path}:{line}: header {','.join(header)!r} names no split; expected CLAM's "
            "',train,val,test' (an index column, then a column of slide ids per split) or "
            "'slide_id,split'"
        )
    unknown = [header[index] for index, split in columns.items() if split is None and index > 0]
    if unknown:
        raise InputError(
            f"{path}:{line}: unknown split column {some_names(unknown)}; expected train, val, test"
        )
    repeated = [split for split, count in Counter(found.values()).items() if count > 1]
    if repeated:
        raise InputError(f"{path}:{line}: more than one {repeated[0]} column in the header")
    return found


def _all_booleans(rows: list[tuple[int, list[str]]], columns: dict[int, str]) -> bool:
    """Whether every filled split cell is True/False (CLAM's ``splits_k_bool.csv``)."""
    cells = [cells[index] for _, cells in rows for index in columns if index < len(cells)]
    filled = [cell.lower() for cell in cells if cell]
    return bool(filled) and set(filled) <= {"true", "false"}


def _boolean_rows(
    path: Path, rows: list[tuple[int, list[str]]], columns: dict[int, str]
) -> list[Entry]:
    """The slides of CLAM's ``splits_k_bool.csv``: the slide id first, True in its split's column."""
    entries: list[Entry] = []
    for line, cells in rows:
        if not cells[0]:
            raise InputError(f"{path}:{line}: slide id missing in the first column")
        entries += [
            (split, cells[0], line)
            for index, split in columns.items()
            if index < len(cells) and cells[index].lower() == "true"
        ]
    return entries


def _slide_split_rows(
    path: Path, rows: Iterator[tuple[int, list[str]]], id_column: int, split_column: int
) -> Iterator[Entry]:
    """The slides of a ``slide_id,split`` CSV, one a row."""
    for line, cells in rows:
        if len(cells) <= max(id_column, split_column):
            raise InputError(f"{path}:{line}: {len(cells)} fields, expected slide_id and split")
        slide, name = cells[id_column], cells[split_column]
        if not slide:
            raise InputError(f"{path}:{line}: slide_id missing")
        split = _split_name(name)
        if split is None:
            raise InputError(
                f"{path}:{line}: unknown split {name!r} for slide {slide!r}; expected train, val "
                "(or valid, validation) or test"
            )
        yield split, slide, line


def _assemble(path: Path, entries: list[Entry], slide_ids: list[str]) -> Split:
    """The split lists, refusing a slide listed twice or one without features; slides in no split
    are counted and logged."""
    split: Split = {name: [] for name in SPLITS}
    listed: dict[str, tuple[str, int | str]] = {}
    for name, slide, place in entries:
        if slide in listed:
            first_split, first_place = listed[slide]
            where = f"{path}:{place}" if isinstance(place, int) else f"{path} ({place})"
            first = f"line {first_place}" if isinstance(first_place, int) else first_place
            raise InputError(
                f"{where}: slide {slide!r} is in {name}, but {first} already puts it in "
                f"{first_split}; expected each slide in one split"
            )
        listed[slide] = (name, place)
        split[name].append(slide)
    known = set(slide_ids)
    unknown = [slide for slide in listed if slide not in known]
    if unknown:
        raise InputError(
            f"{path}: {len(unknown)} slides of the split file have no features (they are not among "
            f"the {len(known)} slides read): {some_names(unknown)}"
        )
    if not split["train"]:
        raise InputError(f"{path}: no training slides, expected a non-empty train split")
    unlisted = [slide for slide in slide_ids if slide not in listed]
    if unlisted:
        logger.warning(
            "%s: %d of %d slides are in no split and are left out: %s",
            path, len(unlisted), len(slide_ids), some_names(unlisted),
        )  # fmt: skip
    return split


# --- seeded stratified splits --------------------------------------------------------------------


def cross_validation_split(
    slide_ids: Sequence[str],
    labels: Sequence[str],
    folds: int,
    fold: int,
    seed: int,
    val_fraction: float = 0.1,
) -> Split:
    """Fold ``fold`` of a seeded ``folds``-fold cross-validation, stratified by label: test is that
    fold (each class's slides dealt evenly over the folds, so over all folds each slide is tested
    once), val a stratified ``val_fraction`` of the other slides, train the rest."""
    labels = _checked(slide_ids, labels)
    if folds < 2:
        raise InputError(f"folds is {folds}, expected at least 2")
    if not 0 <= fold < folds:
        raise InputError(f"fold is {fold}, expected 0 to {folds - 1} (one of {folds} folds)")
    _check_fraction("val_fraction", val_fraction)
    counts = Counter(labels.tolist())
    for name in class_names(counts):
        if counts[name] < folds:
            raise InputError(
                f"class {name!r} has {counts[name]} slides, fewer than the {folds} folds; expected "
                "at least one slide of each class in every fold"
            )
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    fold_of[_class_order(labels, rng)] = np.arange(len(labels)) % folds
    test = np.flatnonzero(fold_of == fold)
    rest = np.flatnonzero(fold_of != fold)
    val = _stratified_take(rest, labels, round(val_fraction * len(rest)), rng)
    return _as_split(slide_ids, np.setdiff1d(rest, val), val, test)


def holdout_split(
    slide_ids: Sequence[str],
    labels: Sequence[str],
    seed: int,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> Split:
    """A seeded random split stratified by label: ``test_fraction`` of the slides test,
    ``val_fraction`` validate, the rest train."""
    labels = _checked(slide_ids, labels)
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1:
        raise InputError(
            f"val_fraction {val_fraction} + test_fraction {test_fraction} leave no slides to "
            "train on; expected a sum below 1"
        )
    rng = np.random.default_rng(seed)
    every = np.arange(len(labels))
    test = _stratified_take(every, labels, round(test_fraction * len(every)), rng)
    rest = np.setdiff1d(every, test)
    val = _stratified_take(rest, labels, min(round(val_fraction * len(every)), len(rest)), rng)
    train = np.setdiff1d(rest, val)
    if not len(train):
        raise InputError(
            f"{len(every)} slides are too few to split into train, val ({val_fraction}) and test "
            f"({test_fraction}): none is left to train on"
        )
    return _as_split(slide_ids, train, val, test)


def _checked(slide_ids: Sequence[str], labels: Sequence[str | None]) -> np.ndarray:
    """The labels as an array, once the slides are known to be distinct and all labelled."""
    if len(slide_ids) != len(labels):
        raise ValueError(f"{len(slide_ids)} slide ids but {len(labels)} labels")
    if not len(slide_ids):
        raise InputError("no slides to split")
    repeated = [slide for slide, count in Counter(slide_ids).items() if count > 1]
    if repeated:
        raise InputError(f"{len(repeated)} slide ids repeat: {some_names(repeated)}")
    unlabelled = [slide for slide, label in zip(slide_ids, labels, strict=True) if label is None]
    if unlabelled:
        raise InputError(
            f"{len(unlabelled)} slides have no label, and a split by class needs every label: "
            f"{some_names(unlabelled)}"
        )
    return np.asarray(labels, dtype=object)


def _check_fraction(name: str, value: float) -> None:
    """Refuse a fraction outside [0, 1)."""
    if not 0 <= value < 1:
        raise InputError(f"{name} is {value}, expected a fraction in [0, 1)")


def _class_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """All slide indices grouped by class (in :func:`class_names` order), shuffled within each."""
    groups = [rng.permutation(np.flatnonzero(labels == name)) for name in class_names(labels)]
    return np.concatenate(groups)


def _stratified_take(
    indices: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator
) -> np.ndarray:
    """A random ``count`` of ``indices``, each class given its proportional share (largest
    remainders round up, so the shares differ from exact proportions by less than one)."""
    if count == 0:
        return np.empty(0, dtype=np.int64)
    names = class_names(labels[indices])
    sizes = np.array([np.count_nonzero(labels[indices] == name) for name in names])
    shares, remainders = np.divmod(count * sizes, len(indices))
    shares[np.argsort(-remainders, kind="stable")[: count - shares.sum()]] += 1
    groups = [
        rng.permutation(indices[labels[indices] == name])[:share]
        for name, share in zip(names, shares, strict=True)
    ]
    return np.sort(np.concatenate(groups))


def _as_split(
    slide_ids: Sequence[str], train: np.ndarray, val: np.ndarray, test: np.ndarray
) -> Split:
    """Index arrays → slide id lists, each in the order of ``slide_ids``."""
    return {
        name: [slide_ids[i] for i in np.sort(part)]
        for name, part in zip(SPLITS, (train, val, test), strict=True)
    }
