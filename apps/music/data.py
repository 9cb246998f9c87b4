"""The music datamodule: pieces (music21 chorales by default, JSB files, MIDI folders, MAESTRO) →
augmented random crops for training (±3 semitones, 0.95–1.05 time stretch, as the paper), every
token of the held-out pieces for evaluation, and primers to continue for ``predict``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from apps.music import events
from apps.music.pieces import (
    GRID_FORMATS,
    Format,
    Piece,
    Pieces,
    check_pieces,
    folder_pieces,
    grid_pieces,
    maestro_pieces,
    music21_pieces,
)
from apps.music.representation import GRID, PERFORMANCE, Representation
from apps.music.tokens import END, PAD, START
from core.train import AppDataModule, InputError
from core.train.errors import input_file

STRETCH_ROOM = 1.25  # a crop is cut this much longer before a time stretch, then trimmed


@dataclass
class MusicBatch:
    """Token windows: ``tokens [B, L]`` inputs and ``targets [B, L]`` the next tokens (PAD = no
    target); ``names`` the pieces and ``starts`` each window's first position in its piece."""

    tokens: torch.Tensor
    targets: torch.Tensor
    names: list[str]
    starts: list[int]

    def __len__(self) -> int:
        return self.tokens.shape[0]


@dataclass
class PrimerBatch:
    """Primers to continue: ``tokens [B, P]`` (START first, equal lengths) and their names."""

    tokens: torch.Tensor
    names: list[str]

    def __len__(self) -> int:
        return self.tokens.shape[0]


def framed(piece: Piece) -> np.ndarray:
    """The piece as the model reads it: START, its tokens, END."""
    return np.concatenate([[START], piece.tokens, [END]]).astype(np.int64)


class Crops(Dataset):
    """Training: ``crops_per_piece`` random windows of ``seq_len + 1`` tokens a piece and epoch,
    starting on a time step, each transposed and time-stretched at random."""

    def __init__(
        self,
        pieces: list[Piece],
        seq_len: int,
        representation: Representation,
        transpose: int,
        stretch: float,
        crops_per_piece: int,
    ) -> None:
        self.pieces, self.seq_len, self.representation = pieces, seq_len, representation
        self.transpose, self.stretch, self.crops_per_piece = transpose, stretch, crops_per_piece

    def __len__(self) -> int:
        return len(self.pieces) * self.crops_per_piece

    def __getitem__(self, index: int) -> tuple[str, int, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"crop {index} of {len(self)}")  # also ends plain iteration
        piece = self.pieces[index % len(self.pieces)]
        tokens = framed(piece)
        step = self.representation.step_tokens
        room = math.ceil((self.seq_len + 1) * (STRETCH_ROOM if self.stretch else 1.0))
        # START, then the first token of every step (1, 1 + step, …), while a full window fits
        starts = np.concatenate([[0], np.arange(1, max(len(tokens) - room, 1) + 1, step)])
        start = int(starts[torch.randint(len(starts), ()).item()])
        window = tokens[start : start + room]
        semitones = int(torch.randint(-self.transpose, self.transpose + 1, ()).item())
        window = self.representation.transpose(window, semitones)
        if self.stretch:
            factor = 1.0 + self.stretch * (2 * torch.rand(()).item() - 1)
            window = self.representation.stretch(window, factor)
        return piece.name, start, window[: self.seq_len + 1]


class Windows(Dataset):
    """Evaluation: every token of every piece once, as consecutive windows of ``seq_len`` targets
    (the context restarts at each window, as the paper's evaluation on fixed-length segments)."""

    def __init__(self, pieces: list[Piece], seq_len: int) -> None:
        self.windows: list[tuple[str, int, np.ndarray]] = []
        for piece in pieces:
            tokens = framed(piece)
            for start in range(0, len(tokens) - 1, seq_len):
                self.windows.append((piece.name, start, tokens[start : start + seq_len + 1]))

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[str, int, np.ndarray]:
        return self.windows[index]


class Primers(Dataset):
    """``predict``: the first ``primer_tokens`` tokens (START included) of each primer piece."""

    def __init__(self, pieces: list[Piece], primer_tokens: int) -> None:
        self.primers = [(p.name, framed(p)[:primer_tokens]) for p in pieces]

    def __len__(self) -> int:
        return len(self.primers)

    def __getitem__(self, index: int) -> tuple[str, np.ndarray]:
        return self.primers[index]


class MusicDataModule(AppDataModule):
    """Symbolic music for next-token training.

    Args:
        format: ``music21`` (the Bach chorales shipped in music21, converted to the JSB 16th-note
            grid on first use: the default, no download); ``jsb_json`` (Jsb16thSeparated.json),
            ``jsb_pickle`` (the Boulanger-Lewandowski pickle, a quarter-note grid) or ``jsb_npz``
            with ``jsb_file``; ``midi`` (every ``.mid``/``.midi`` under ``midi_dir``, split
            80/10/10 by name) or ``maestro`` (``maestro_file``, the MAESTRO csv or json index) as
            performance events. A file or folder is looked up as given, then under ``root``.
        max_pieces: music21 only: convert the first n chorales (quick trials); null: all.
        seq_len: tokens a training window predicts (and an evaluation window).
        transpose: training pitch shift drawn from −n…n semitones (0: off).
        stretch: training time stretch drawn from 1 ± s (performance events only; 0: off).
        crops_per_piece: training windows a piece and epoch.
        primer_file: ``predict`` continues this MIDI file (performance data); default: the first
            ``primer_steps`` steps of the first ``predict_pieces`` test pieces.
        primer_steps: grid steps (4 tokens each) or events of a primer.
    """

    def __init__(
        self,
        format: Format = "music21",
        jsb_file: str | None = None,
        midi_dir: str | None = None,
        maestro_file: str | None = None,
        max_pieces: int | None = None,
        seq_len: int = 256,
        transpose: int = 3,
        stretch: float = 0.05,
        crops_per_piece: int = 1,
        primer_file: str | None = None,
        primer_steps: int = 32,
        predict_pieces: int = 4,
        root: str = "data/music",
        batch_size: int = 16,
        eval_batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 1234,
    ) -> None:
        super().__init__(root, batch_size, eval_batch_size, num_workers, seed)
        self.format, self.max_pieces, self.seq_len = format, max_pieces, seq_len
        self.transpose, self.stretch, self.crops_per_piece = transpose, stretch, crops_per_piece
        self.primer_steps, self.predict_pieces = primer_steps, predict_pieces
        self.sources = {"jsb_file": jsb_file, "midi_dir": midi_dir, "maestro_file": maestro_file}
        self.representation: Representation = GRID if format in GRID_FORMATS else PERFORMANCE
        self.representation_name = self.representation.name  # linked to the task
        self.primer_file = None if primer_file is None else Path(primer_file)
        if self.primer_file is not None and self.representation is GRID:
            raise InputError(
                f"--data.primer_file {primer_file}: a MIDI primer needs performance data "
                "(--data.format midi or maestro); chorale primers are the test chorales' openings"
            )
        self.pieces: Pieces | None = None

    def source(self) -> tuple[Pieces, Path | str]:
        """Read the pieces of ``format`` (and record the file read)."""
        wanted = {
            "jsb_json": "jsb_file", "jsb_pickle": "jsb_file", "jsb_npz": "jsb_file",
            "midi": "midi_dir", "maestro": "maestro_file", "music21": None,
        }[self.format]  # fmt: skip
        for flag, value in self.sources.items():
            if value is not None and flag != wanted:
                raise InputError(
                    f"--data.{flag} {value} is not read by --data.format {self.format}"
                )
        if wanted is None:
            pieces, path = music21_pieces(self.root, self.max_pieces)
            self.record_file("chorales", path)
            return pieces, path
        value = self.sources[wanted]
        if value is None:
            raise InputError(f"--data.format {self.format} needs --data.{wanted}")
        if self.format == "midi":
            return folder_pieces(self.data_path(value), self.root), value
        path = input_file(self.data_path(value), f"the {self.format} file of --data.{wanted}")
        self.record_file(self.format, path)
        if self.format == "maestro":
            return maestro_pieces(path, self.root), path
        return grid_pieces(self.format, path), path

    def setup(self, stage: str) -> None:
        if self.pieces is None:
            pieces, source = self.source()
            needed = {"fit": ("train", "valid"), "validate": ("valid",)}.get(stage, ("test",))
            if not (stage == "predict" and self.primer_file is not None):
                check_pieces(pieces, source, needed)
            self.pieces = pieces
        pieces = self.pieces
        if stage == "fit":
            self.datasets["train"] = Crops(
                pieces["train"],
                self.seq_len,
                self.representation,
                self.transpose,
                self.stretch if self.representation is PERFORMANCE else 0.0,
                self.crops_per_piece,
            )
        if stage in ("fit", "validate"):
            self.datasets["val"] = Windows(pieces["valid"], self.seq_len)
        if stage == "test":
            self.datasets["test"] = Windows(pieces["test"], self.seq_len)
        if stage == "predict":
            self.datasets["predict"] = self.primers(pieces["test"])

    def primers(self, test: list[Piece]) -> Primers:
        """The primer file's opening, or the openings of the first test pieces long enough."""
        length = 1 + self.primer_steps * self.representation.step_tokens
        if self.primer_file is not None:
            path = self.data_path(str(self.primer_file))
            path = input_file(path, "a MIDI file to continue (--data.primer_file)")
            self.record_file("primer", path)
            pieces = [Piece(path.stem, events.notes_to_events(events.read_midi(path)))]
        else:
            pieces = [p for p in test if len(p.tokens) + 1 >= length][: self.predict_pieces]
            if not pieces:
                raise InputError(
                    f"no test piece has {self.primer_steps} steps to use as a primer; lower "
                    "--data.primer_steps"
                )
        return Primers(pieces, length)

    def collate(self, items: list[tuple]) -> MusicBatch | PrimerBatch:
        if len(items[0]) == 2:  # primers
            names, primers = zip(*items, strict=True)
            width = min(len(p) for p in primers)
            tokens = torch.from_numpy(np.stack([p[:width] for p in primers]))
            return PrimerBatch(tokens, list(names))
        names, starts, windows = zip(*items, strict=True)
        width = max(len(w) for w in windows) - 1
        padded = np.full((len(windows), width + 1), PAD, dtype=np.int64)
        for row, window in zip(padded, windows, strict=True):
            row[: len(window)] = window
        padded = torch.from_numpy(padded)
        return MusicBatch(padded[:, :-1], padded[:, 1:], list(names), list(starts))
