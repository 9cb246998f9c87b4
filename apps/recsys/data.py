"""The recsys datamodule: interaction files (or the built-in generator) → user sequences → the
leave-one-out or temporal split → training windows with TED's teacher rows, and evaluation cases
ranked over every item (or against saved sampled negatives)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from apps.recsys.distill import TeacherRows, TransitionTeacher, transition_counts
from apps.recsys.generate import ensure_generated
from apps.recsys.histories import read_histories
from apps.recsys.interactions import Sequences
from apps.recsys.readers import read_interactions
from apps.recsys.sequences import (
    Cases,
    Split,
    build_sequences,
    check_no_leak,
    leave_one_out,
    load_or_draw_negatives,
    temporal_split,
)
from core.train import AppDataModule, InputError

logger = logging.getLogger("apps.recsys")

Format = Literal["generated", "atomic", "movielens", "sasrec", "amazon"]
Protocol = Literal["leave_one_out", "temporal"]
Ranking = Literal["full", "sampled"]


@dataclass
class TrainBatch:
    """Training windows: ``items [B, T]`` left-padded inputs (0 = padding), ``targets [B, T]`` the
    next item at each position (0 at padding), ``teacher``: TED's rows of the batch's input items."""

    items: torch.Tensor
    targets: torch.Tensor
    teacher: TeacherRows

    def __len__(self) -> int:
        return self.items.shape[0]


@dataclass
class EvalBatch:
    """Users to rank for: ``users`` their tokens ``[B]``; ``items [B, T]`` the latest ``max_len``
    items of the history (left-padded); ``seen [B, S]`` every history item (0 = padding), masked in
    full ranking; ``target [B]`` the held-out item (0 when unknown: predict); ``candidates [B, C]``
    the target then its sampled negatives (sampled protocol) or None (full ranking); ``teacher``:
    TED's rows of each user's latest item (for the transitions figure)."""

    users: list[str]
    items: torch.Tensor
    seen: torch.Tensor
    target: torch.Tensor
    candidates: torch.Tensor | None
    teacher: TeacherRows

    def __len__(self) -> int:
        return self.items.shape[0]


def left_pad(rows: list[np.ndarray], width: int | None = None) -> torch.Tensor:
    """Right-aligned ``[len(rows), width]`` int64 (0 on the left); width: the longest row."""
    width = max((len(r) for r in rows), default=0) if width is None else width
    out = np.zeros((len(rows), max(width, 1)), dtype=np.int64)
    for i, row in enumerate(rows):
        if len(row):
            out[i, -len(row) :] = row
    return torch.from_numpy(out)


class TrainWindows(Dataset):
    """One window per training user (as the official code): the latest ``max_len + 1`` items of the
    training prefix, inputs ``[:-1]`` and next-item targets ``[1:]``."""

    def __init__(self, sequences: Sequences, lengths: np.ndarray, max_len: int) -> None:
        self.windows = [
            seq[:n][-(max_len + 1) :]
            for seq, n in zip(sequences.items, lengths, strict=True)
            if n >= 2
        ]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.windows[index]


class RankingCases(Dataset):
    """Evaluation cases: ``(user token, history, target, candidates or None)``; target 0 = unknown."""

    def __init__(
        self,
        users: list[str],
        histories: list[np.ndarray],
        targets: np.ndarray,
        candidates: np.ndarray | None = None,
    ) -> None:
        self.users, self.histories, self.targets = users, histories, targets
        self.candidates = candidates

    @classmethod
    def from_cases(
        cls, sequences: Sequences, cases: Cases, candidates: np.ndarray | None = None
    ) -> RankingCases:
        items = sequences.items
        return cls(
            [sequences.user_tokens[u] for u in cases.users],
            [items[u][:c] for u, c in zip(cases.users, cases.cuts, strict=True)],
            np.array([items[u][c] for u, c in zip(cases.users, cases.cuts, strict=True)]),
            candidates,
        )

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, index: int) -> tuple[str, np.ndarray, int, np.ndarray | None]:
        negatives = None if self.candidates is None else self.candidates[index]
        return self.users[index], self.histories[index], int(self.targets[index]), negatives


class RecsysDataModule(AppDataModule):
    """Sequences for next-item recommendation.

    Args:
        format: ``generated`` (the built-in generator, the default) or a reader of
            :mod:`apps.recsys.readers`: ``atomic`` (RecBole ``.inter``), ``movielens`` (``u.data``,
            ``ratings.dat``, ``ratings.csv``), ``sasrec`` (``user item`` lines), ``amazon``.
        interactions_file: the interaction file (a relative path is looked up as given, then under
            ``root``).
        generate_users, generate_items: size of the generated data.
        min_interactions: users with fewer are dropped (counted; 3 = train, validation and test).
        k_core: iterative k-core filter of users and items (0: off; 5 for the 5-core datasets).
        min_rating: drop interactions rated below this (null: keep all, the usual implicit view).
        protocol: ``leave_one_out`` (last item tests, second last validates) or ``temporal`` (a
            global time split at ``temporal_ratios``).
        ranking: ``full`` (every item, the user's seen items masked) or ``sampled`` (the target
            against ``negatives`` items the user never interacted with, drawn once, saved under
            ``root`` and reused — the older papers' protocol; not comparable with full ranking).
        max_len: the longest input window (the model's positions: linked to ``model.max_len``).
        predict_file: new users' histories, one user a line ``user item item …`` in time order
            (default: the test users' histories).
    """

    def __init__(
        self,
        format: Format = "generated",
        interactions_file: str | None = None,
        generate_users: int = 6000,
        generate_items: int = 3000,
        min_interactions: int = 3,
        k_core: int = 0,
        min_rating: float | None = None,
        protocol: Protocol = "leave_one_out",
        temporal_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
        ranking: Ranking = "full",
        negatives: int = 100,
        max_len: int = 50,
        distill_temperature: float = 0.1,
        predict_file: str | None = None,
        root: str = "data/recsys",
        batch_size: int = 256,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        seed: int = 1234,
    ) -> None:
        super().__init__(root, batch_size, eval_batch_size, num_workers, seed)
        self.format, self.protocol, self.ranking = format, protocol, ranking
        self.temporal_ratios, self.negatives = temporal_ratios, negatives
        self.max_len, self.predict_file = max_len, predict_file
        self.distill_temperature = distill_temperature
        if format == "generated" and interactions_file is not None:
            raise InputError(
                f"--data.interactions_file {interactions_file} needs --data.format (atomic, "
                "movielens, sasrec or amazon); the default format is the generated data"
            )
        if format == "generated":
            path = ensure_generated(self.root, generate_users, generate_items, seed)
        elif interactions_file is None:
            raise InputError(
                f"--data.format {format} needs --data.interactions_file (the interaction file)"
            )
        else:
            path = self.data_path(interactions_file)
        self.record_file("interactions", path)
        interactions = read_interactions("atomic" if format == "generated" else format, path)
        self.sequences = build_sequences(interactions, min_interactions, k_core, min_rating)
        logger.info("%s: sha256 of the kept interactions %s", path, self.sequences.digest)
        self.split: Split | None = None

    @property
    def item_tokens(self) -> list[str]:
        """The tokens of items ``1..N`` (linked to the task: a checkpoint's item ids need them)."""
        return self.sequences.item_tokens

    def setup(self, stage: str) -> None:
        seqs = self.sequences
        if self.split is None:
            if self.protocol == "leave_one_out":
                self.split = leave_one_out(seqs)
            else:
                self.split = temporal_split(seqs, self.temporal_ratios)
            check_no_leak(seqs, self.split)
            counts = transition_counts(seqs.items, self.split.train_lengths, seqs.num_items)
            self.teacher = TransitionTeacher(counts, self.distill_temperature)
        split = self.split
        self.datasets["train"] = TrainWindows(seqs, split.train_lengths, self.max_len)
        self.datasets["val"] = self.cases("val", split.val)
        self.datasets["test"] = self.cases("test", split.test)
        if stage == "predict":
            self.datasets["predict"] = self.predict_cases()

    def cases(self, name: str, cases: Cases) -> RankingCases:
        candidates = None
        if self.ranking == "sampled":
            path = self.root / f"negatives_{name}_{self.sequences.digest[:12]}.npy"
            candidates = load_or_draw_negatives(
                path, self.sequences, cases, self.negatives, self.seed
            )
            self.record_file(f"{name}_negatives", path)
        return RankingCases.from_cases(self.sequences, cases, candidates)

    def predict_cases(self) -> RankingCases:
        if self.predict_file is None:
            return RankingCases.from_cases(self.sequences, self.split.test)
        path = self.data_path(self.predict_file)
        self.record_file("predict", path)
        index = {token: i for i, token in enumerate(self.item_tokens, start=1)}
        users, histories = read_histories(path, index)
        return RankingCases(users, histories, np.zeros(len(users), dtype=np.int64))

    def describe(self) -> dict[str, Any]:
        """What ``results.json`` records about the data: the base's counts and files, what
        preprocessing kept, the split protocol and the ranking protocol."""
        ranking = (
            "full: every item is scored; items already in the user's history are removed from "
            "the ranking (a re-consumed target stays)"
            if self.ranking == "full"
            else f"sampled: the target against {self.negatives} items the user never interacted "
            "with, drawn once with the data seed and saved (not comparable with full ranking)"
        )
        return {
            **super().describe(),
            "preprocessing": self.sequences.counts,
            "interactions_sha256": self.sequences.digest,
            "split": self.protocol,
            "ranking": ranking,
            "max_len": self.max_len,
        }

    def collate(self, items: list) -> TrainBatch | EvalBatch:
        if isinstance(items[0], np.ndarray):
            windows = left_pad(items)
            inputs, targets = windows[:, :-1], windows[:, 1:].clone()
            targets[inputs == 0] = 0
            return TrainBatch(inputs, targets, self.teacher.rows(inputs.numpy()))
        users, histories, targets, negatives = zip(*items, strict=True)
        latest = [h[-self.max_len :] for h in histories]
        target = torch.tensor(targets, dtype=torch.long)
        candidates = None
        if negatives[0] is not None:
            candidates = torch.cat([target[:, None], torch.from_numpy(np.stack(negatives))], 1)
        last_items = np.array([h[-1] if len(h) else 0 for h in histories])
        return EvalBatch(
            list(users),
            left_pad(latest),
            left_pad(list(histories)),
            target,
            candidates,
            self.teacher.rows(last_items),
        )
