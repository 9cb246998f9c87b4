"""RecsysTask: MQSA-TED (or SASRec) trained on the full-softmax next-item loss plus TED, evaluated
by ranking every item for each held-out case (HR, NDCG, coverage), with the figures and top-N
prediction file of the field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from matplotlib.figure import Figure

from apps.recsys.data import EvalBatch, TrainBatch
from apps.recsys.distill import distillation_loss
from apps.recsys.metrics import RankingMetrics, mask_seen, rank_items
from apps.recsys.model import MQSA, RecsysConfig
from apps.recsys.plots import Ranked, attention_figure, ranks_figure, transitions_figure
from apps.recsys.softmax import full_softmax_cross_entropy, sampled_binary_cross_entropy
from core.inspect import Recording, record
from core.train import AppTask, as_config
from core.train.figures import write_png

Loss = Literal["softmax", "sampled_bce"]
NEGATIVE_REDRAWS = 4  # SASRec redraws a negative that is one of the user's items
TRANSITION_ROWS, TRANSITION_TOP = 5, 5  # items in the transitions figure, next items per item


@dataclass
class Example:
    """A kept evaluation case: the user, the target's rank, the input row ``[T]`` and, for the
    first few, TED's teacher next items after the latest item (ids with probabilities)."""

    user: str
    rank: int
    items: np.ndarray
    teacher: list[tuple[int, float]] | None


def occurs_in_row(sorted_rows: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Boolean ``[B, T]``: whether ``values[b, t]`` is one of ``sorted_rows[b]`` (``[B, L]``,
    ascending): O(B·T·log L) by binary search, not the O(B·T·L) of comparing every pair."""
    index = torch.searchsorted(sorted_rows, values).clamp_(max=sorted_rows.shape[-1] - 1)
    return sorted_rows.gather(-1, index) == values


class RecsysTask(AppTask):
    """Train :class:`MQSA` for next-item prediction; rank all items at evaluation.

    Args:
        item_tokens: the items' tokens (linked from the datamodule; item id i is index i − 1).
        max_len: the longest input window (linked from the datamodule).
        net: the network's hyper-parameters (``long_query: null`` → SASRec).
        loss: ``softmax`` (cross-entropy over every item at every position, MQSA-TED's) or
            ``sampled_bce`` (SASRec's binary cross-entropy with one sampled negative a position).
        distill_weight: λ of TED's loss (0: no distillation); its temperature τ is the
            datamodule's ``distill_temperature`` (the teacher is built with the data).
        ks: cut-offs of HR@k and NDCG@k (coverage for k ≥ 10).
        predict_top: items a ``predict`` writes per user. Evaluation only, not checkpointed.
        optimizer, scheduler, scheduler_interval, figure_examples: see :class:`core.train.AppTask`.
    """

    monitor = "val/NDCG@20"
    monitor_mode = "max"
    prediction_suffix = ".csv"

    def __init__(
        self,
        item_tokens: list[str],
        max_len: int = 50,
        net: RecsysConfig = RecsysConfig(),
        loss: Loss = "softmax",
        distill_weight: float = 0.1,
        distill_temperature: float = 0.1,
        ks: tuple[int, ...] = (5, 10, 20),
        predict_top: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["predict_top"])
        self.item_tokens = list(item_tokens)
        self.config = as_config(RecsysConfig, net)
        self.model = MQSA(self.config, len(self.item_tokens), max_len)
        self.loss_kind, self.distill_weight = loss, distill_weight
        self.distill_temperature, self.ks, self.predict_top = distill_temperature, ks, predict_top
        self.metrics = torch.nn.ModuleDict(
            {stage: RankingMetrics(len(self.item_tokens), ks) for stage in ("val", "test")}
        )

    # training
    def training_step(self, batch: TrainBatch, batch_idx: int) -> torch.Tensor:
        hidden = self.model(batch.items)
        real = batch.targets > 0
        h, targets = hidden[real], batch.targets[real]
        if self.loss_kind == "softmax":
            rec = full_softmax_cross_entropy(h, self.model.items, targets - 1).mean()
        else:
            negatives = self.sample_negatives(batch)[real]
            embed = self.model.item_embedding
            rec = sampled_binary_cross_entropy(h, embed(targets), embed(negatives)).mean()
        loss = rec
        self.log("train/rec_loss", rec.detach())
        if self.distill_weight > 0 and len(batch.teacher):
            distill = self.distillation(batch)
            loss = loss + self.distill_weight * distill
            self.log("train/distill_loss", distill.detach())
        self.log_loss("train", loss, real.sum())
        return loss

    def distillation(self, batch: TrainBatch) -> torch.Tensor:
        """TED's loss: the mean over the batch's input items (each distinct item once, weighted by
        how often it occurs) of the cross-entropy between teacher and student transitions."""
        teacher, model = batch.teacher, self.model
        scale = model.config.d_model**0.5
        student = model.dropout(model.item_embedding(teacher.heads)) * scale
        per_item = distillation_loss(student, model.items, teacher, self.distill_temperature)
        return (per_item * teacher.occurrences).sum() / teacher.occurrences.sum()

    def sample_negatives(self, batch: TrainBatch) -> torch.Tensor:
        """One uniform negative per position ``[B, T]``, redrawn while it is one of the user's
        input items or the position's target (SASRec's sampler, vectorised)."""
        items, n = batch.items, self.model.num_items
        negatives = torch.randint(1, n + 1, items.shape, device=items.device)
        inputs = items.sort(-1).values  # each negative is looked up by a binary search in its row
        for _ in range(NEGATIVE_REDRAWS):
            clash = occurs_in_row(inputs, negatives) | (negatives == batch.targets)
            if not clash.any():
                break
            negatives[clash] = torch.randint(1, n + 1, (int(clash.sum()),), device=items.device)
        return negatives

    # evaluation
    def latest_scores(self, batch: EvalBatch) -> torch.Tensor:
        """Scores ``[B, N + 1]`` of every item (column 0 the padding) as each user's next item,
        from the latest position of their history."""
        return self.model.scores(self.model(batch.items)[:, -1])

    def _evaluate(self, batch: EvalBatch, stage: str) -> None:
        scores = self.latest_scores(batch)
        # the full-softmax loss from these scores, before ranking masks the seen items in them
        target = scores.gather(1, batch.target[:, None])[:, 0]
        self.log_loss(stage, (torch.logsumexp(scores[:, 1:], -1) - target).mean(), len(batch))
        ranks, top = rank_items(scores, batch.seen, batch.target, batch.candidates, max(self.ks))
        self.metrics[stage].update(ranks, top)
        room = max(0, self.figure_examples - len(self.examples))
        self.keep_examples([self._example(batch, ranks, i) for i in range(min(room, len(batch)))])

    def _example(self, batch: EvalBatch, ranks: torch.Tensor, i: int) -> Example:
        items = batch.items[i].cpu().numpy()
        teacher = None
        if len(self.examples) + i < TRANSITION_ROWS:
            teacher = batch.teacher.next_items(int(items[-1]), TRANSITION_TOP)
        return Example(batch.users[i], int(ranks[i]), items, teacher)

    def validation_step(self, batch: EvalBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_metrics("val", self.metrics["val"])

    def test_step(self, batch: EvalBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.log_metrics("test", self.metrics["test"])

    # predictions
    def predict_step(self, batch: EvalBatch, batch_idx: int) -> list[tuple[str, list[Any]]]:
        scores = mask_seen(self.latest_scores(batch), batch.seen, batch.target)
        best = scores.topk(min(self.predict_top, self.model.num_items))
        return [
            (user, list(zip(ids.tolist(), values.tolist(), strict=True)))
            for user, ids, values in zip(batch.users, best.indices, best.values, strict=True)
        ]

    def format_prediction(self, prediction: tuple[str, list[Any]]) -> str:
        """One user as ``predict_top`` CSV rows ``user_id,rank,item_id,score``."""
        user, ranked = prediction
        return "\n".join(
            f"{user},{rank},{self.item_tokens[item - 1]},{score:.4f}"
            for rank, (item, score) in enumerate(ranked, start=1)
        )

    def prediction_header(self) -> str:
        return "user_id,rank,item_id,score"

    # figures
    def draw_examples(self, stage: str, examples: list[Example]) -> dict[str, Figure]:
        ranks = np.array([e.rank for e in examples])
        figures = {"ranks": ranks_figure(ranks, self.ks, self.model.num_items)}
        first = examples[0]
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad(), record(self.model, mode="weights") as recording:
            self.model(torch.from_numpy(first.items)[None].to(self.device))
        self.model.train(was_training)
        attention = attention_figure(
            recording, first.items, self.item_tokens, f"User {first.user}'s latest items"
        )
        if attention is not None:
            figures["attention"] = attention
        rows = [self._transitions(e) for e in examples if e.teacher is not None]
        if rows:
            figures["transitions"] = transitions_figure(rows[:TRANSITION_ROWS])
        return figures

    def _transitions(self, example: Example) -> tuple[str, Ranked, Ranked, float]:
        """The latest item of ``example`` with its teacher's and its embedding's likeliest next
        items (the student of TED: ``softmax(√d · e_i · Eᵀ / τ)``, whose largest entry is usually
        the item itself: that one is left out of the list and returned on its own)."""
        item, tokens = int(example.items[-1]), self.item_tokens
        with torch.no_grad():
            table = self.model.items
            logits = table[item - 1] @ table.T * self.config.d_model**0.5
            probabilities = torch.softmax(logits / self.distill_temperature, 0)
            itself = float(probabilities[item - 1])
            probabilities[item - 1] = -1.0
            best = probabilities.topk(TRANSITION_TOP)
        student = [(tokens[i], float(p)) for i, p in zip(best.indices, best.values, strict=True)]
        teacher = [(tokens[i - 1], p) for i, p in example.teacher or []]
        return tokens[item - 1], teacher, student, itself

    def render_attention(self, recording: Recording, out_dir: Path) -> list[Path]:
        """Hook of ``core.inspect.AttentionInspector``: the first recorded user's attention, short-
        against long-query branch, with each head's share on the oldest and the latest item."""
        batch = recording.batches[0] if recording.batches else None
        if not isinstance(batch, EvalBatch):
            return []
        items = batch.items[0].cpu().numpy()
        figure = attention_figure(recording, items, self.item_tokens, f"User {batch.users[0]}")
        if figure is None:
            return []
        return [write_png(figure, out_dir / "branch_attention.png")]

    def evaluation_protocol(self) -> dict[str, Any]:
        return {
            **super().evaluation_protocol(),
            "metrics": "HR@k and NDCG@k averaged over the held-out cases (one a user), the rank "
            "counting every candidate that scores at least as high as the target (ties count "
            "against it); Coverage@k: share of all items in at least one top-k list",
            "model": "SASRec" if self.config.long_query is None else "MQSA",
            "loss": self.loss_kind,
            "distill_weight": self.distill_weight,
        }
