"""Split files in every accepted layout read exactly, with overlaps and unknown slides refused; the
seeded cross-validation and holdout splits are stratified, disjoint, covering and reproducible; and
choose_split reports what it did."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path

import pytest

from apps.wsi.splits import (
    SplitChoice,
    choose_split,
    cross_validation_split,
    holdout_split,
    read_split_file,
)
from core.train.errors import InputError

SLIDES = [f"s{i}" for i in range(10)]
EXPECTED = {"train": ["s0", "s1", "s2", "s3"], "val": ["s4", "s5"], "test": ["s6", "s7", "s8"]}


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def labelled(counts: dict[str, int]) -> tuple[list[str], list[str]]:
    """Slide ids and labels with ``counts[label]`` slides of each label, interleaved."""
    labels = [label for label, count in counts.items() for _ in range(count)]
    labels = labels[::2] + labels[1::2]
    return [f"slide_{i:03d}" for i in range(len(labels))], labels


# --- split files ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        EXPECTED,
        {"train": EXPECTED["train"], "validation": EXPECTED["val"], "test": EXPECTED["test"]},
        {"train": EXPECTED["train"], "valid": EXPECTED["val"], "test": EXPECTED["test"]},
        {f"{name}_names": ids for name, ids in EXPECTED.items()},
    ],
)
def test_json_layouts(tmp_path, data, caplog):
    path = write(tmp_path, "split.json", json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="apps.wsi"):
        assert read_split_file(path, SLIDES) == EXPECTED
    assert "1 of 10 slides are in no split" in caplog.text and "'s9'" in caplog.text


def test_clam_splits_csv(tmp_path):
    text = ",train,val,test\n0,s0,s4,s6\n1,s1,s5,s7\n2,s2,,s8\n3,s3,,\n"
    assert read_split_file(write(tmp_path, "splits_0.csv", text), SLIDES) == EXPECTED


def test_clam_bool_splits_csv(tmp_path):
    rows = [
        f"{s},{name == 'train'},{name == 'val'},{name == 'test'}"
        for name, ids in EXPECTED.items()
        for s in ids
    ]
    text = ",train,val,test\n" + "\n".join(rows) + "\n"
    assert read_split_file(write(tmp_path, "splits_0_bool.csv", text), SLIDES) == EXPECTED


def test_slide_split_csv(tmp_path):
    rows = [f"{s}, {name.upper()}" for name, ids in EXPECTED.items() for s in ids]
    text = "slide_id,split\n" + "\n".join(rows) + "\n"
    assert read_split_file(write(tmp_path, "split.csv", text), SLIDES) == EXPECTED


SPLIT_FILE_ERRORS = [
    ('a.json', '{"train": ["s0", "s1"], "test": ["s1"]}',
     r"a.json \('test' item 0\): slide 's1' is in test, but 'train' item 1 already puts it in train"),
    ("b.csv", ",train,val,test\n0,s0,s1,s0\n",
     r"b.csv:2: slide 's0' is in test, but line 2 already puts it in train"),
    ("c.csv", "slide_id,split\ns0,train\ns0,val\n",
     r"c.csv:3: slide 's0' is in val, but line 2 already puts it in train"),
    ("d.json", '{"train": ["s0", "x1", "x2"]}',
     r"d.json: 2 slides of the split file have no features .*'x1', 'x2'"),
    ("e.json", '{"train": ["s0"], "holdout": ["s1"]}', r"e.json: unknown split 'holdout'"),
    ("f.json", '{"val": ["s0"], "valid": ["s1"]}',
     r"f.json: keys 'val' and 'valid' both give the val split"),
    ("g.csv", ",train,extra\n0,s0,s1\n", r"g.csv:1: unknown split column 'extra'"),
    ("h.csv", "slide_id,split\ns0,train\ns1,holdout\n",
     r"h.csv:3: unknown split 'holdout' for slide 's1'"),
    ("i.csv", "a,b\n1,2\n", r"i.csv:1: header 'a,b' names no split"),
    ("j.json", '{"train": [], "test": ["s0"]}', r"j.json: no training slides"),
    ("k.json", "[1, 2]", r"k.json: a JSON list, expected an object"),
    ("l.txt", "train", r"l.txt: suffix '.txt'"),
    ("m.json", '{"train": [1, 2]}', r"m.json: 'train' is not a list of slide ids"),
    ("n.csv", ",train,val\n0,s0,s1,s2\n", r"n.csv:2: 4 fields, expected at most 3"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "message"), SPLIT_FILE_ERRORS)
def test_split_file_errors(tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    with pytest.raises(InputError, match=re.escape(str(tmp_path)) + "/" + message):
        read_split_file(path, SLIDES)


# --- cross-validation ----------------------------------------------------------------------------


def test_cross_validation_is_stratified_disjoint_and_covering():
    ids, labels = labelled({"normal": 23, "tumor": 11, "other": 7})
    label_of = dict(zip(ids, labels, strict=True))
    tested: list[str] = []
    for fold in range(5):
        split = cross_validation_split(ids, labels, folds=5, fold=fold, seed=3)
        assert sorted(s for part in split.values() for s in part) == sorted(
            ids
        )  # disjoint and covering
        assert all(split[name] for name in ("train", "val", "test"))
        for ids_of in split.values():
            assert ids_of == [s for s in ids if s in set(ids_of)]  # in the given order
        per_class = Counter(label_of[s] for s in split["test"])
        assert per_class == {
            "normal": per_class["normal"],
            "tumor": per_class["tumor"],
            "other": per_class["other"],
        }
        assert (
            per_class["normal"] in (4, 5)
            and per_class["tumor"] in (2, 3)
            and per_class["other"] in (1, 2)
        )
        assert len(split["val"]) == round(0.1 * (len(ids) - len(split["test"])))
        tested += split["test"]
    assert sorted(tested) == sorted(ids)  # each slide is test exactly once over the folds


def test_cross_validation_test_folds_differ_by_at_most_one_per_class():
    ids, labels = labelled({"0": 13, "1": 9, "2": 5})
    label_of = dict(zip(ids, labels, strict=True))
    counts = [
        Counter(label_of[s] for s in cross_validation_split(ids, labels, 4, f, 0)["test"])
        for f in range(4)
    ]
    for label in ("0", "1", "2"):
        per_fold = [count[label] for count in counts]
        assert max(per_fold) - min(per_fold) <= 1, (label, per_fold)


def test_cross_validation_depends_only_on_the_seed():
    ids, labels = labelled({"a": 20, "b": 20})
    first = cross_validation_split(ids, labels, 5, 2, seed=7)
    assert cross_validation_split(ids, labels, 5, 2, seed=7) == first
    assert cross_validation_split(ids, labels, 5, 2, seed=8) != first


@pytest.mark.parametrize(
    ("folds", "fold", "message"),
    [
        (1, 0, "folds is 1, expected at least 2"),
        (5, 5, r"fold is 5, expected 0 to 4"),
        (5, -1, r"fold is -1, expected 0 to 4"),
        (6, 0, "class 'b' has 5 slides, fewer than the 6 folds"),
    ],
)
def test_cross_validation_errors(folds, fold, message):
    ids, labels = labelled({"a": 12, "b": 5})
    with pytest.raises(InputError, match=message):
        cross_validation_split(ids, labels, folds, fold, seed=0)


# --- holdout -------------------------------------------------------------------------------------


def test_holdout_is_stratified_and_seeded():
    ids, labels = labelled({"normal": 30, "tumor": 20})
    label_of = dict(zip(ids, labels, strict=True))
    split = holdout_split(ids, labels, seed=1)
    assert sorted(s for part in split.values() for s in part) == sorted(ids)
    assert Counter(label_of[s] for s in split["test"]) == {"normal": 6, "tumor": 4}
    assert Counter(label_of[s] for s in split["val"]) == {"normal": 3, "tumor": 2}
    assert holdout_split(ids, labels, seed=1) == split
    assert holdout_split(ids, labels, seed=2) != split


def test_holdout_errors():
    with pytest.raises(InputError, match="leave no slides to train on"):
        holdout_split(SLIDES, ["a"] * 10, 0, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(InputError, match="too few to split"):
        holdout_split(["s0"], ["a"], 0, val_fraction=0.0, test_fraction=0.6)
    with pytest.raises(InputError, match=r"1 slides have no label.*'s1'"):
        holdout_split(["s0", "s1"], ["a", None], 0)
    with pytest.raises(InputError, match=r"1 slide ids repeat.*'s0'"):
        holdout_split(["s0", "s0"], ["a", "a"], 0)


# --- choosing ------------------------------------------------------------------------------------


def test_choose_split_prefers_file_then_cross_validation_then_holdout(tmp_path):
    ids, labels = labelled({"a": 10, "b": 10})
    path = write(tmp_path, "split.json", json.dumps({"train": ids[:15], "test": ids[15:]}))
    split, choice = choose_split(ids, labels, split_file=path, folds=5)
    assert split == {"train": ids[:15], "val": [], "test": ids[15:]}
    assert choice == SplitChoice("file", file=str(path), counts={"train": 15, "val": 0, "test": 5})

    split, choice = choose_split(ids, labels, folds=5, fold=1, seed=4)
    assert split == cross_validation_split(ids, labels, 5, 1, 4)
    assert choice.as_dict() == {
        "kind": "cross_validation", "file": None, "folds": 5, "fold": 1, "seed": 4,
        "val_fraction": 0.1, "test_fraction": None, "counts": {"train": 14, "val": 2, "test": 4},
    }  # fmt: skip
    json.dumps(choice.as_dict())

    split, choice = choose_split(ids, labels, seed=4)
    assert split == holdout_split(ids, labels, 4)
    assert (choice.kind, choice.seed, choice.test_fraction) == ("holdout", 4, 0.2)
    assert choice.counts == {"train": 14, "val": 2, "test": 4}

    with pytest.raises(InputError, match="folds is -1"):
        choose_split(ids, labels, folds=-1)
