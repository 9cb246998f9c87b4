"""How ``nox -s demo`` presents the music app: the task, the likelihood metrics, and a count-based
baseline scored on the same test windows (read by :mod:`core.train.demo`)."""

from __future__ import annotations

import numpy as np
import torch

from apps.music.data import MusicDataModule, Windows, framed
from apps.music.metrics import LikelihoodMetrics
from core.train.cli import ManyheadsCLI
from core.train.report import Baseline, DemoCard, MetricRow


def lag_bigram_metrics(cli: ManyheadsCLI) -> dict[str, float]:
    """NLL of ``P(x_t | x_{t−s})``, s = one time step of tokens (the same voice one 16th earlier on
    the grid, the previous event otherwise), counted on the training pieces with add-one smoothing
    and scored on exactly the test windows the model was (context restarts at each window)."""
    data: MusicDataModule = cli.datamodule
    representation, lag = data.representation, data.representation.step_tokens
    vocab = representation.vocab_size
    counts = np.ones((vocab, vocab))
    for piece in data.pieces["train"]:
        tokens = framed(piece)
        np.add.at(counts, (tokens[:-lag], tokens[lag:]), 1)
    log_p = np.log(counts / counts.sum(1, keepdims=True))
    metric = LikelihoodMetrics(representation.first_note_token)
    windows: Windows = data.datasets["test"]
    for _, _, window in windows:
        context = np.concatenate([np.full(max(0, lag - 1), window[0]), window])
        nll = -log_p[context[:-lag], context[lag:]]
        metric.update(torch.from_numpy(nll)[None], torch.from_numpy(window[1:])[None])
    return {f"test/{name}": value for name, value in metric.compute().items()}


def metric(key: str, label: str, meaning: str, fmt: str = "{:.3f}") -> MetricRow:
    return MetricRow(f"test/{key}", label, meaning + "; lower is better", fmt=fmt)


CARD = DemoCard(
    title="Music Transformer: Bach chorales, four voices on a 16th-note grid",
    task=(
        "**Task.** Model music as a sequence: predict each next token of a chorale, then "
        "continue an opening into new music. **Data.** The Bach chorales that ship with music21 "
        "(407 four-part chorales), converted to the JSB grid — soprano, alto, tenor and bass at "
        "every 16th note, serialised step by step as in the paper's chorale experiment — split "
        "80/10/10; training crops of 256 tokens (4 bars) transposed by up to ±3 semitones. "
        "**Model.** The Music Transformer (Huang et al. 2019): a decoder-only Transformer whose "
        "attention adds a learned embedding per relative distance, computed with the memory-"
        "efficient skewing procedure. Tutorial: `docs/music.md`."
    ),
    paper_source=(
        "Huang et al. 2019 (Table 1) report note-wise validation NLL 0.335 on the JSB split of "
        "Boulanger-Lewandowski et al., not on these music21 chorales, so there is no paper column "
        "here (the tutorial runs that split); the baseline is scored on the same test windows"
    ),
    metrics=(
        metric("nll_per_note", "NLL / note", "nats per grid cell (one voice at one step)"),
        metric("nll_per_token", "NLL / token", "nats per token, END included"),
        metric("perplexity", "perplexity", "exp(NLL per token)", fmt="{:.2f}"),
    ),
    baseline=Baseline(
        "*lag bigram*: the probability of each token given the same voice one 16th earlier, "
        "counted on the training chorales (add-one smoothing), scored on the same test windows",
        lag_bigram_metrics,
    ),
    figures={
        "continuation": "The opening of a test chorale (grey) continued by the model (blue): "
        "a piano roll of the four voices.",
        "distances": "Each head's attention by relative distance on that piece (rows scaled to "
        "their peak); thin lines mark beats, thick ones bars.",
        "arcs": "Over the piano roll, arcs from a few notes of the continuation to the earlier "
        "notes they attend most (last layer, heads averaged).",
    },
    full_run_overlays=("configs/music/jsb.yaml",),
    full_run_note=(
        "JSB Chorales (229/76/77, Jsb16thSeparated.json) with the same model; put the file in "
        "`data/music/` first (see `docs/music.md`). `configs/music/jsb_paper.yaml` adds the "
        "paper's model size."
    ),
)
