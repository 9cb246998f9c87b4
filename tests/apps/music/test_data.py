"""The datamodule's windows, crops and primers, the MIDI path end to end, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import torch

from apps.music.__main__ import main
from apps.music.data import Crops, MusicDataModule, Windows, framed
from apps.music.pieces import Piece
from apps.music.representation import GRID, PERFORMANCE
from apps.music.tokens import END, PAD, START

REPO = Path(__file__).resolve().parents[3]


def piece(n: int, name: str = "p") -> Piece:
    return Piece(name, np.arange(n, dtype=np.int64) % 120 + 4)


def test_windows_cover_every_token_once() -> None:
    pieces = [piece(10, "a"), piece(3, "b")]
    windows = Windows(pieces, seq_len=4)
    targets = {name: [] for name in "ab"}
    for name, _, window in windows:
        targets[name].extend(window[1:].tolist())
    assert targets["a"] == framed(pieces[0])[1:].tolist()
    assert targets["b"] == framed(pieces[1])[1:].tolist()
    assert all(len(w) <= 5 for _, _, w in windows)


def test_grid_crops_start_on_a_step_and_stay_a_transposition_of_the_piece() -> None:
    torch.manual_seed(0)
    chorale = Piece("c", np.tile(np.array([4 + 72, 4 + 67, 4 + 60, 4 + 48]), 40))
    crops = Crops([chorale], seq_len=16, representation=GRID, transpose=3, stretch=0.0,
                  crops_per_piece=50)  # fmt: skip
    full = framed(chorale)
    assert len(list(crops)) == len(crops) == 50  # iteration ends after the last crop
    for _, start, window in (crops[i] for i in range(len(crops))):
        assert len(window) == 17
        assert start == 0 or (start - 1) % 4 == 0
        original = full[start : start + 17]
        shift = {int(d) for d in (window - original)[original >= 4]}
        assert len(shift) == 1 and abs(shift.pop()) <= 3
        assert np.array_equal(window[original < 4], original[original < 4])


def test_collate_pads_targets_with_pad() -> None:
    data = MusicDataModule(format="jsb_json", jsb_file="unused.json")
    batch = data.collate([("a", 0, np.array([START, 5, 6, END])), ("b", 3, np.array([7, 8]))])
    assert batch.tokens.tolist() == [[START, 5, 6], [7, 8, PAD]]
    assert batch.targets.tolist() == [[5, 6, END], [8, PAD, PAD]]
    assert batch.names == ["a", "b"] and batch.starts == [0, 3]


def write_piece(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    for i in range(40):
        start = 0.25 * i
        piano.notes.append(
            pretty_midi.Note(
                int(rng.integers(40, 90)), int(rng.integers(30, 110)), start, start + 0.4
            )
        )
    midi.instruments.append(piano)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.write(str(path))


TINY = [
    "-c",
    str(REPO / "configs/music/default.yaml"),
    "-c",
    str(REPO / "tests/apps/music/tiny.yaml"),
]


def test_a_midi_folder_trains_and_a_midi_primer_is_continued(in_tmp: Path) -> None:
    for i in range(30):  # split by name hash: 30 files leave every split some
        write_piece(in_tmp / "midi" / f"set{i % 3}" / f"piece{i}.mid", i)
    write_piece(in_tmp / "primer.mid", 99)
    performance = [*TINY, "--data.format", "midi", "--data.midi_dir", "midi",
                   "--data.seq_len", "64"]  # fmt: skip
    main(["fit", *performance, "--trainer.max_steps", "2"])
    main(["predict", *performance, "--ckpt_path", "last", "--data.primer_file", "primer.mid"])
    rows = (in_tmp / "runs/music/tiny/predict/predictions.csv").read_text().splitlines()
    assert rows[0].startswith("primer,") and rows[1].startswith("primer,")
    generated = pretty_midi.PrettyMIDI(str(in_tmp / rows[1].split(",")[-1]))
    assert generated.instruments and len(generated.instruments[0].notes) > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--data.format", "jsb_json", "--data.jsb_file", "missing.json"],
            "missing.json: no such file",
        ),
        (["--data.format", "jsb_json", "--data.jsb_file", "bad.json"], "bad.json: train[0][1]"),
        (["--data.format", "midi", "--data.midi_dir", "broken"], "not a readable MIDI file"),
        (
            ["--data.midi_dir", "broken"],
            "--data.midi_dir broken is not read by --data.format music21",
        ),
        (["--data.primer_file", "x.mid"], "a MIDI primer needs performance data"),
    ],
)
def test_bad_input_is_one_line_with_status_2_and_no_run_folder(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    (in_tmp / "bad.json").write_text(
        json.dumps({"train": [[[60, 55, 52, 48], [60, 55, 52]]], "valid": [], "test": []})
    )
    (in_tmp / "broken").mkdir()
    (in_tmp / "broken" / "a.mid").write_bytes(b"MThd not really a midi file")
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *TINY, *args])
    assert exit_.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert not (in_tmp / "runs").exists()


def test_the_representations_agree_with_their_vocabularies() -> None:
    assert GRID.vocab_size == 132 and PERFORMANCE.vocab_size == 391
    assert GRID.first_note_token == 3 and PERFORMANCE.first_note_token is None
