"""How ``nox -s demo`` presents the recsys app: the task, the ranking metrics, and a most-popular
baseline ranked on the same test cases (read by :mod:`core.train.demo`)."""

from __future__ import annotations

import numpy as np
import torch

from apps.recsys.data import RecsysDataModule
from apps.recsys.metrics import RankingMetrics, rank_items
from core.train.cli import ManyheadsCLI
from core.train.report import Baseline, DemoCard, MetricRow

KS = (5, 10, 20)


def popularity_metrics(cli: ManyheadsCLI) -> dict[str, float]:
    """Rank every unseen item by its number of training interactions, for the test cases."""
    data: RecsysDataModule = cli.datamodule
    seqs, split = data.sequences, data.split
    prefixes = [s[:n] for s, n in zip(seqs.items, split.train_lengths, strict=True)]
    counts = np.bincount(np.concatenate(prefixes), minlength=seqs.num_items + 1)
    popularity = torch.from_numpy(counts).double()
    metric = RankingMetrics(seqs.num_items, KS)
    for batch in data.test_dataloader():
        scores = popularity.repeat(len(batch), 1)  # ranked in place: one row each
        metric.update(*rank_items(scores, batch.seen, batch.target, batch.candidates, max(KS)))
    return {f"test/{name}": float(value) for name, value in metric.compute().items()}


def metric(key: str, label: str, meaning: str) -> MetricRow:
    return MetricRow(f"test/{key}", label, meaning + "; higher is better", fmt="{:.4f}")


CARD = DemoCard(
    title="MQSA-TED: next-item recommendation from a user's history",
    task=(
        "**Task.** From the items a user interacted with, in order, rank every item by how likely "
        "it comes next; the held-out last item of each user is the test. **Data.** The built-in "
        "generator: 6,000 users and 3,000 items, sequences driven by latent tastes and by item-to-"
        "item transitions (a sparse Markov chain), written as a RecBole `.inter` file and read back "
        "by its reader; leave-one-out split, full ranking over every item with the user's seen "
        "items removed. **Model.** MQSA-TED (Zhu et al. 2024): SASRec's causal self-attention "
        "with a short-query branch (the latest item asks) and a long-query branch (the mean of the "
        "last 3 items asks), mixed half and half, and item embeddings distilled from the training "
        "transitions (TED). Tutorial: `docs/recsys.md`."
    ),
    paper_source=(
        "Zhu et al. 2024 report Amazon and Yelp datasets, not this generator, so there is no "
        "paper column; the baseline ranks the same test cases"
    ),
    metrics=(
        metric("HR@10", "HR@10", "share of users whose next item is in the top 10"),
        metric("NDCG@10", "NDCG@10", "the same, discounted by the position in the top 10"),
        metric("NDCG@20", "NDCG@20", "the checkpoint-selection metric, over the top 20"),
        metric("Coverage@10", "Coverage@10", "share of all items recommended to someone"),
    ),
    baseline=Baseline(
        "*most popular*: every unseen item ranked by its number of training interactions, "
        "computed on the same test cases",
        popularity_metrics,
    ),
    figures={
        "ranks": "Where each test user's held-out item ranked among all items (log scale), with "
        "the hit rate at 5, 10 and 20.",
        "attention": "One user's latest items: what the short-query (the latest item asks) and the "
        "long-query (the mean of the last 3 asks) branches attend to, and each head's share on "
        "the oldest and the latest item.",
        "transitions": "For the latest items of a few users: the next items TED's teacher expects "
        "(training transition counts) against those the learned item embeddings predict.",
    },
    full_run_overlays=("configs/recsys/ml100k.yaml",),
    full_run_note=(
        "MovieLens-100K (943 users, 1,682 items), 200 epochs; put `ml-100k.inter` in "
        "`data/recsys/` first (see `docs/recsys.md`)."
    ),
)
