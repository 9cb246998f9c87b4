"""Readers of precomputed tile features in the layouts of the two main public MIL codebases, each
returning :class:`~apps.wsi.bags.Bag` objects.

* CLAM (Lu et al. 2021), :func:`read_clam_folder`: a dataset CSV (``case_id,slide_id,label``, read
  by :func:`read_labels`) and a features folder with ``h5_files/<slide_id>.h5`` (datasets
  ``features`` [N, D] and ``coords`` [N, 2], patch size and level as attrs of ``coords``) or
  ``pt_files/<slide_id>.pt`` (a ``torch.save``'d tensor [N, D], no coordinates). This repository's
  own preprocessing writes the same h5 layout plus file attrs (``tile_size`` in level-0 pixels,
  ``tile_px``, ``target_mpp``, ``slide_mpp``, ``extractor``, ``slide_path``, ``skipped_tiles``) and a
  ``thumbnail`` dataset uint8 [h, w, 3] with attr ``downsample``. One file: :func:`read_feature_file`.
* ACMIL (Zhang et al. 2024), :func:`read_acmil_h5`: one HDF5 file, a group per slide holding ``feat``
  [N, D] and ``coords`` [N, 2], the class in the group's ``label`` attr.

Bad input raises ``InputError`` naming the file (and line or group) and what was expected. A slide
whose feature file is missing, or a feature file with no label, is left out, counted and logged.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from apps.wsi.bags import Bag
from core.train.errors import InputError, input_file

logger = logging.getLogger("apps.wsi")

H5_SUFFIXES = (".h5", ".hdf5")
PT_SUFFIXES = (".pt", ".pth")
_PROGRESS_FROM = 20  # show a progress bar when reading at least this many slides
_INTEGER = re.compile(r"[+-]?\d+")


def some_names(names: Iterable[str], limit: int = 5) -> str:
    """Up to ``limit`` quoted names, then how many more: ``'a', 'b' and 3 more``."""
    names = list(names)
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def class_names(labels: Iterable[str]) -> list[str]:
    """The distinct labels in order: integer-looking ones numerically ("2" before "10"), then the
    others alphabetically."""

    def key(label: str) -> tuple[int, int, str]:
        return (0, int(label), label) if _INTEGER.fullmatch(label) else (1, 0, label)

    return sorted(set(labels), key=key)


# --- CSV text ------------------------------------------------------------------------------------


def csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, whitespace-stripped cells)`` of each non-blank row of a UTF-8 CSV file."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            for row in reader:
                cells = [cell.strip() for cell in row]
                if any(cells):
                    yield reader.line_num, cells
        except UnicodeDecodeError as error:
            raise InputError(f"{path}: not UTF-8 text ({error}); expected a CSV file") from error
        except csv.Error as error:
            raise InputError(f"{path}:{reader.line_num}: malformed CSV ({error})") from error


def read_labels(path: str | Path) -> dict[str, str]:
    """CLAM's dataset CSV → ``{slide_id: label}`` in file order. The header needs ``slide_id`` and
    ``label`` (other columns such as ``case_id`` are ignored); a slide may repeat with the same
    label (the repeat is counted and logged), never with another."""
    what = "CLAM's dataset CSV with columns slide_id and label"
    path = input_file(path, what)
    rows = csv_rows(path)
    header_line, header = next(rows, (0, []))
    missing = [name for name in ("slide_id", "label") if name not in header]
    if missing:
        raise InputError(
            f"{path}:{max(header_line, 1)}: no {' or '.join(missing)} column in the header "
            f"{','.join(header)!r}; expected {what}"
        )
    id_column, label_column = header.index("slide_id"), header.index("label")
    labels: dict[str, str] = {}
    first_line: dict[str, int] = {}
    repeats = 0
    for line, cells in rows:
        slide, label = _label_row(path, line, cells, id_column, label_column)
        if slide in labels:
            if labels[slide] != label:
                raise InputError(
                    f"{path}:{line}: slide {slide!r} has label {label!r}, but line "
                    f"{first_line[slide]} gave it {labels[slide]!r}; expected one label a slide"
                )
            repeats += 1
            continue
        labels[slide], first_line[slide] = label, line
    if not labels:
        raise InputError(f"{path}: no slides under the header; expected {what}")
    if repeats:
        logger.warning("%s: %d rows repeat a slide with the same label; read once", path, repeats)
    return labels


def _label_row(
    path: Path, line: int, cells: list[str], id_column: int, label_column: int
) -> tuple[str, str]:
    """The slide id and label of one data row of the dataset CSV."""
    if len(cells) <= max(id_column, label_column):
        raise InputError(
            f"{path}:{line}: {len(cells)} fields, expected at least {max(id_column, label_column) + 1}"
            " (as many as the header up to slide_id and label)"
        )
    slide, label = cells[id_column], cells[label_column]
    if not slide:
        raise InputError(f"{path}:{line}: slide_id missing")
    if not label:
        raise InputError(f"{path}:{line}: label missing for slide {slide!r}")
    return slide, label


# --- one slide's features ------------------------------------------------------------------------


def read_feature_file(
    path: str | Path, slide_id: str | None = None, label: str | None = None
) -> Bag:
    """One slide's features from a CLAM ``.h5`` (``features``, ``coords`` and, when written here,
    tile size and thumbnail) or ``.pt`` file (a tensor [N, D]; coords all zero, tile size 0).
    ``slide_id`` defaults to the file's stem."""
    what = "a CLAM feature file (.h5 with 'features' and 'coords', or a .pt tensor)"
    path = input_file(path, what)
    slide_id = path.stem if slide_id is None else slide_id
    suffix = path.suffix.lower()
    if suffix in H5_SUFFIXES:
        return _read_clam_h5(path, slide_id, label)
    if suffix in PT_SUFFIXES:
        return _read_clam_pt(path, slide_id, label)
    raise InputError(
        f"{path}: not a feature file (suffix {path.suffix!r}, expected "
        f"{' or '.join(H5_SUFFIXES + PT_SUFFIXES)}: {what})"
    )


def _open_h5(path: Path, what: str) -> h5py.File:
    """The HDF5 file open for reading; anything else is an InputError."""
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise InputError(f"{path}: not an HDF5 file ({error}); expected {what}") from error


def _read_clam_h5(path: Path, slide_id: str, label: str | None) -> Bag:
    """A CLAM (or this repository's) feature h5 file as a Bag."""
    with _open_h5(path, "a CLAM feature file") as handle:
        features = _features(_dataset(handle, "features", str(path)), str(path), "features")
        coords = _coords(handle, len(features), str(path))
        tile_size = _file_tile_size(handle, path)
        if tile_size is None:
            tile_size = _clam_tile_size(handle["coords"]) if "coords" in handle else 0
        thumbnail, downsample = _thumbnail(handle, path)
    return Bag(
        slide_id, features, coords, label, tile_size, thumbnail, thumbnail_downsample=downsample
    )


def _read_clam_pt(path: Path, slide_id: str, label: str | None) -> Bag:
    """A CLAM ``pt_files`` tensor [N, D] as a Bag without coordinates."""
    try:
        tensor = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure to unpickle is the file's fault
        raise InputError(
            f"{path}: not a torch.save file ({error}); expected a tensor [N, D]"
        ) from error
    if not isinstance(tensor, torch.Tensor):
        raise InputError(f"{path}: holds a {type(tensor).__name__}, expected a tensor [N, D]")
    if not tensor.is_floating_point():
        raise InputError(f"{path}: tensor of {tensor.dtype}, expected floating-point features")
    features = _features(tensor.detach().to(torch.float32).numpy(), str(path), "tensor")
    coords = np.zeros((len(features), 2), dtype=np.int64)
    return Bag(slide_id, features, coords, label=label)


def _dataset(group: h5py.Group, name: str, where: str) -> h5py.Dataset:
    """``group[name]``, which must be a dataset."""
    item = group.get(name)
    if not isinstance(item, h5py.Dataset):
        present = ", ".join(repr(key) for key in group) or "nothing"
        raise InputError(f"{where}: no {name!r} dataset (it holds {present})")
    return item


def _features(data: h5py.Dataset | np.ndarray, where: str, name: str) -> np.ndarray:
    """Checked features, float32 [N, D]: 2-D, floating point, at least one row, all finite."""
    if data.ndim != 2:
        raise InputError(f"{where}: {name!r} has shape {list(data.shape)}, expected [N, D]")
    if data.dtype.kind != "f":
        raise InputError(f"{where}: {name!r} holds {data.dtype}, expected floating-point features")
    if data.shape[0] == 0:
        raise InputError(f"{where}: no instances ({name!r} has 0 rows), expected a non-empty bag")
    features = np.asarray(data[()], dtype=np.float32)
    bad = int((~np.isfinite(features)).any(axis=1).sum())
    if bad:
        raise InputError(
            f"{where}: {bad} of {len(features)} rows of {name!r} hold NaN or inf, expected finite "
            "features"
        )
    return features


def _coords(group: h5py.Group, count: int, where: str) -> np.ndarray:
    """Tile corners int64 [count, 2] from ``group["coords"]``; all zero when there is none."""
    if "coords" not in group:
        return np.zeros((count, 2), dtype=np.int64)
    data = _dataset(group, "coords", where)
    if data.shape != (count, 2):
        raise InputError(
            f"{where}: 'coords' has shape {list(data.shape)}, expected [{count}, 2] (one (x, y) "
            "per feature row)"
        )
    if data.dtype.kind not in "iuf":
        raise InputError(f"{where}: 'coords' holds {data.dtype}, expected pixel coordinates")
    coords = data[()]
    if not np.isfinite(coords).all():
        raise InputError(f"{where}: 'coords' holds NaN or inf, expected pixel coordinates")
    return np.rint(coords).astype(np.int64)


def _file_tile_size(handle: h5py.File, path: Path) -> int | None:
    """The ``tile_size`` file attr this repository writes (level-0 pixels), None when absent."""
    if "tile_size" not in handle.attrs:
        return None
    value = handle.attrs["tile_size"]
    size = _number(value)
    if size is None or size < 0 or not float(size).is_integer():
        raise InputError(
            f"{path}: attr 'tile_size' is {value!r}, expected a whole number of level-0 pixels"
        )
    return int(size)


def _clam_tile_size(coords: h5py.Dataset) -> int:
    """Tile side in level-0 pixels from CLAM's attrs on ``coords``: ``patch_size`` times the patch
    level's ``downsample`` (1 at level 0); 0 when the attrs do not tell."""
    patch_size = _number(coords.attrs.get("patch_size"))
    if patch_size is None or patch_size <= 0:
        return 0
    downsample = _number(coords.attrs.get("downsample"))
    if downsample is None:
        downsample = 1.0 if _number(coords.attrs.get("patch_level")) == 0 else None
    return 0 if downsample is None or downsample <= 0 else round(patch_size * downsample)


def _number(value: object) -> float | None:
    """A finite attr value as a float (the first entry of an array, as CLAM's (x, y)
    ``downsample``); None when absent or not a number."""
    if value is None:
        return None
    array = np.asarray(value).reshape(-1)
    if array.size == 0 or array.dtype.kind not in "iuf" or not math.isfinite(array[0]):
        return None
    return float(array[0])


def _thumbnail(handle: h5py.File, path: Path) -> tuple[np.ndarray | None, float]:
    """The ``thumbnail`` dataset uint8 [h, w, 3] and its ``downsample`` (level-0 pixels per
    thumbnail pixel); ``(None, 1.0)`` when the file has none."""
    if "thumbnail" not in handle:
        return None, 1.0
    data = _dataset(handle, "thumbnail", str(path))
    if data.ndim != 3 or data.shape[2] != 3 or data.dtype != np.uint8:
        raise InputError(
            f"{path}: 'thumbnail' is {data.dtype} {list(data.shape)}, expected uint8 [h, w, 3]"
        )
    downsample = _number(data.attrs.get("downsample"))
    if downsample is None or downsample <= 0:
        raise InputError(
            f"{path}: 'thumbnail' attr 'downsample' is {data.attrs.get('downsample')!r}, expected "
            "a positive number (level-0 pixels per thumbnail pixel)"
        )
    return data[()], downsample


# --- CLAM folders --------------------------------------------------------------------------------


def read_clam_folder(features_dir: str | Path, labels_file: str | Path) -> list[Bag]:
    """Every slide of CLAM's dataset CSV that has a feature file in ``features_dir``
    (``h5_files/<slide_id>.h5``, else ``pt_files/<slide_id>.pt``), labelled, in CSV order. Slides
    without a feature file and feature files without a CSV row are left out, counted and logged."""
    features_dir = Path(features_dir)
    if not features_dir.is_dir():
        raise InputError(f"{features_dir}: no such folder (expected CLAM's features folder)")
    labels = read_labels(labels_file)
    found = {slide: _clam_file(features_dir, slide) for slide in labels}
    missing = [slide for slide, file in found.items() if file is None]
    if len(missing) == len(labels):
        raise InputError(
            f"{features_dir}: no feature file for any of the {len(labels)} slides of {labels_file} "
            f"(such as {some_names(missing, 3)}); expected h5_files/<slide_id>.h5 or "
            "pt_files/<slide_id>.pt"
        )
    if missing:
        logger.warning(
            "%s: %d of %d slides of %s have no feature file and are left out: %s",
            features_dir, len(missing), len(labels), labels_file, some_names(missing),
        )  # fmt: skip
    _log_unlabelled(features_dir, labels, labels_file)
    files = [(slide, file) for slide, file in found.items() if file is not None]
    bar = tqdm(files, desc="reading features", unit="slide", disable=len(files) < _PROGRESS_FROM)
    return [read_feature_file(file, slide, labels[slide]) for slide, file in bar]


def _clam_file(features_dir: Path, slide_id: str) -> Path | None:
    """The slide's feature file, h5 before pt; None when it has neither."""
    for path in (
        features_dir / "h5_files" / f"{slide_id}.h5",
        features_dir / "pt_files" / f"{slide_id}.pt",
    ):
        if path.is_file():
            return path
    return None


def _log_unlabelled(features_dir: Path, labels: dict[str, str], labels_file: str | Path) -> None:
    """Count and log the feature files whose slide has no row in the dataset CSV."""
    stems = {path.stem for path in features_dir.glob("h5_files/*.h5")}
    stems |= {path.stem for path in features_dir.glob("pt_files/*.pt")}
    unlabelled = sorted(stems - labels.keys())
    if unlabelled:
        logger.warning(
            "%s: %d feature files have no row in %s (no label) and are left out: %s",
            features_dir, len(unlabelled), labels_file, some_names(unlabelled),
        )  # fmt: skip


# --- ACMIL ---------------------------------------------------------------------------------------


def read_acmil_h5(path: str | Path) -> list[Bag]:
    """ACMIL's single HDF5 file: one group per slide (its name the slide id) with ``feat`` [N, D],
    ``coords`` [N, 2] (all zero when absent) and the class in ``attrs['label']``; file order."""
    what = "ACMIL's HDF5 file: a group per slide with 'feat', 'coords' and attr 'label'"
    path = input_file(path, what)
    with _open_h5(path, what) as handle:
        names = list(handle)
        if not names:
            raise InputError(f"{path}: no slide groups; expected {what}")
        bar = tqdm(names, desc="reading slides", unit="slide", disable=len(names) < _PROGRESS_FROM)
        return [_acmil_bag(handle, name, f"{path}/{name}") for name in bar]


def _acmil_bag(handle: h5py.File, name: str, where: str) -> Bag:
    """One ACMIL slide group as a Bag."""
    group = handle[name]
    if not isinstance(group, h5py.Group):
        raise InputError(f"{where}: a dataset at the top level, expected a group per slide")
    if "label" not in group.attrs:
        raise InputError(f"{where}: no 'label' attr, expected the slide's class")
    features = _features(_dataset(group, "feat", where), where, "feat")
    coords = _coords(group, len(features), where)
    return Bag(name, features, coords, label=_label_text(group.attrs["label"], where))


def _label_text(value: object, where: str) -> str:
    """An attr label as text: ints as written, whole floats as ints (``1.0`` → ``"1"``), bytes
    decoded."""
    array = np.asarray(value)
    if array.size != 1:
        raise InputError(f"{where}: 'label' attr is {value!r}, expected one class")
    item = array.reshape(-1)[0].item()
    if isinstance(item, bytes):
        item = item.decode()
    if isinstance(item, float) and item.is_integer():
        item = int(item)
    text = str(item).strip()
    if not text:
        raise InputError(f"{where}: 'label' attr is empty, expected the slide's class")
    return text
