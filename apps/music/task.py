"""MusicTask: the Music Transformer trained by next-token cross-entropy, evaluated by NLL per token
(and per note on the JSB grid), continuing primers into MIDI files, and showing its attention by
relative distance and as arcs between notes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from apps.music.data import MusicBatch, PrimerBatch
from apps.music.metrics import LikelihoodMetrics, token_nll
from apps.music.model import MusicConfig, MusicTransformer
from apps.music.plots import arcs_figure, distance_figure, distance_profile, piano_roll_figure
from apps.music.representation import REPRESENTATIONS, Name, token_notes
from apps.music.sample import Sampling, generate
from apps.music.tokens import PAD, START
from core.inspect import Recording, record
from core.train import AppTask, as_config
from core.train.figures import run_folder, write_png

FIGURE_PRIMER_STEPS = 16  # steps (a 4/4 bar of 16ths on the grid) the figure's continuation follows
ARC_QUERIES, ARCS_PER_QUERY = 6, 3


@dataclass
class Example:
    """A kept evaluation window: its piece and tokens ``[L]`` (inputs, START first at a piece's
    start)."""

    name: str
    tokens: np.ndarray


@dataclass
class Generated:
    """One ``predict`` output: the primer's name, token counts, notes, length and MIDI path (not
    frozen: Lightning walks the predictions and refuses frozen dataclasses)."""

    name: str
    primer_tokens: int
    new_tokens: int
    notes: int
    seconds: float
    midi: Path


class MusicTask(AppTask):
    """Train :class:`MusicTransformer` on one representation; generate with a KV cache.

    Args:
        representation: ``grid`` or ``performance`` (linked from the datamodule's format).
        net: the network's hyper-parameters (``max_relative_position: null`` → vanilla).
        max_len: the longest sequence generated (primer included) and the absolute positions' table.
        sampling: temperature, top-k, top-p of ``predict`` and the figures' continuations.
        generate_tokens: tokens ``predict`` adds to each primer.
        figure_tokens: tokens the validation figure's continuation adds.
        The last three are evaluation-only and not checkpointed.
        optimizer, scheduler, scheduler_interval, figure_examples: see :class:`core.train.AppTask`.
    """

    monitor = "val/loss"
    monitor_mode = "min"
    prediction_suffix = ".csv"

    def __init__(
        self,
        representation: Name = "grid",
        net: MusicConfig = MusicConfig(),
        max_len: int = 2048,
        sampling: Sampling = Sampling(),
        generate_tokens: int = 512,
        figure_tokens: int = 192,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["sampling", "generate_tokens", "figure_tokens"])
        self.representation = REPRESENTATIONS[representation]
        self.config = as_config(MusicConfig, net)
        self.sampling = as_config(Sampling, sampling)
        self.model = MusicTransformer(self.config, self.representation.vocab_size, max_len)
        self.generate_tokens, self.figure_tokens = generate_tokens, figure_tokens
        first_note = self.representation.first_note_token
        self.metrics = torch.nn.ModuleDict(
            {stage: LikelihoodMetrics(first_note) for stage in ("val", "test")}
        )

    def _nll(self, batch: MusicBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-position NLL ``[B, L]`` and the mean over real targets."""
        nll = token_nll(self.model(batch.tokens), batch.targets)
        return nll, nll.sum() / (batch.targets != PAD).sum().clamp(min=1)

    def training_step(self, batch: MusicBatch, batch_idx: int) -> torch.Tensor:
        _, loss = self._nll(batch)
        self.log_loss("train", loss, (batch.targets != PAD).sum())
        return loss

    def _evaluate(self, batch: MusicBatch, stage: str) -> None:
        nll, loss = self._nll(batch)
        self.log_loss(stage, loss, (batch.targets != PAD).sum())
        self.metrics[stage].update(nll, batch.targets)
        room = max(0, self.figure_examples - len(self.examples))
        self.keep_examples(
            [
                Example(batch.names[i], batch.tokens[i][batch.tokens[i] != PAD].cpu().numpy())
                for i in range(min(room, len(batch)))
            ]
        )

    def validation_step(self, batch: MusicBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_metrics("val", self.metrics["val"])

    def test_step(self, batch: MusicBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.log_metrics("test", self.metrics["test"])

    # generation
    def continue_primer(self, primer: torch.Tensor, steps: int, seed: int) -> torch.Tensor:
        """``primer [B, P]`` continued by up to ``steps`` sampled tokens (KV cache), seeded."""
        steps = min(steps, self.model.max_len - primer.shape[1])
        generator = torch.Generator(device=primer.device).manual_seed(seed)
        return generate(self.model, primer, steps, self.sampling, generator)

    def predict_step(self, batch: PrimerBatch, batch_idx: int) -> list[Generated]:
        pieces = self.continue_primer(batch.tokens, self.generate_tokens, seed=batch_idx)
        folder = run_folder(self.trainer) / "generated"
        out = []
        for name, tokens in zip(batch.names, pieces.cpu().numpy(), strict=True):
            tokens = tokens[tokens != PAD]
            path = self.representation.write_midi(tokens, folder / f"{safe(name)}.mid")
            notes = self.representation.to_notes(tokens)
            seconds = float(notes[:, 3].max()) if len(notes) else 0.0
            primer = batch.tokens.shape[1]
            out.append(Generated(name, primer, len(tokens) - primer, len(notes), seconds, path))
        return out

    def format_prediction(self, prediction: Generated) -> str:
        p = prediction
        return f"{p.name},{p.primer_tokens},{p.new_tokens},{p.notes},{p.seconds:.2f},{p.midi}"

    def prediction_header(self) -> str:
        return "primer,primer_tokens,generated_tokens,notes,seconds,midi"

    # figures
    def draw_examples(self, stage: str, examples: list[Example]) -> dict[str, Figure]:
        first = self.examples_start(examples)
        primer_length = 1 + FIGURE_PRIMER_STEPS * self.representation.step_tokens
        primer = torch.from_numpy(first.tokens[:primer_length])[None].to(self.device)
        piece = self.continue_primer(primer, self.figure_tokens, seed=0)[0]
        piece = piece[piece != PAD].cpu().numpy()
        notes = self.representation.to_notes(piece)
        times, _ = token_notes(self.representation, piece)
        cut = times[primer.shape[1]] if len(piece) > primer.shape[1] else np.inf
        figures = {
            "continuation": piano_roll_figure(
                notes[notes[:, 2] < cut],
                notes[notes[:, 2] >= cut],
                cut,
                f"{first.name}: {primer.shape[1]} primer tokens, then {len(piece) - primer.shape[1]} "
                f"sampled (temperature {self.sampling.temperature}, top-k {self.sampling.top_k}, "
                f"top-p {self.sampling.top_p})",
            )
        }
        recording = self.record_attention(torch.from_numpy(piece)[None])
        figures.update(self.attention_figures(recording, piece, f"{first.name} continued"))
        return figures

    @staticmethod
    def examples_start(examples: list[Example]) -> Example:
        """The first kept window that opens its piece (START first), else the first one."""
        return next((e for e in examples if e.tokens[0] == START), examples[0])

    def record_attention(self, tokens: torch.Tensor) -> Recording:
        """Every layer's attention weights on ``tokens [1, L]`` (one forward, eval mode)."""
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad(), record(self.model, mode="weights") as recording:
            self.model(tokens.to(self.device))
        self.model.train(was_training)
        return recording

    def attention_figures(
        self, recording: Recording, tokens: np.ndarray, title: str
    ) -> dict[str, Figure]:
        """The distance profile of every head (up to two 4/4 bars back on the grid, 128 events
        otherwise) and the arcs of the last layer, on ``tokens [L]``."""
        layers = {
            "layer " + name.removeprefix("decoder.layers.").removesuffix(".self_attn"): (
                batches[0].weights[0]
            )
            for name, batches in recording.weights.items()
            if batches and batches[0].weights
        }
        if not layers:
            return {}
        max_distance = min(len(tokens) - 1, 8 * (self.representation.beat_tokens or 16))
        profiles = {name: distance_profile(w, max_distance) for name, w in layers.items()}
        times, pitches = token_notes(self.representation, tokens)
        last = next(reversed(layers.values())).mean(0)
        return {
            "distances": distance_figure(
                profiles, self.representation.beat_tokens, f"{title}: attention by distance"
            ),
            "arcs": arcs_figure(
                self.representation.to_notes(tokens), times, pitches, last,
                ARC_QUERIES, ARCS_PER_QUERY, f"{title}: where notes look (last layer)",
            ),
        }  # fmt: skip

    def render_attention(self, recording: Recording, out_dir: Path) -> list[Path]:
        """Hook of ``core.inspect.AttentionInspector``: the first recorded window's distance profile
        per head and its note-to-note arcs."""
        batch = recording.batches[0] if recording.batches else None
        if not isinstance(batch, MusicBatch):
            return []
        tokens = batch.tokens[0][batch.tokens[0] != PAD].cpu().numpy()
        figures = self.attention_figures(recording, tokens, batch.names[0])
        return [write_png(fig, out_dir / f"{name}.png") for name, fig in figures.items()]

    def evaluation_protocol(self) -> dict[str, Any]:
        return {
            **super().evaluation_protocol(),
            "representation": self.representation.name,
            "attention": "relative" if self.config.relative else "absolute (vanilla)",
            "metrics": "NLL in nats over every target token of the held-out pieces (END included, "
            "START not), in consecutive windows of the datamodule's seq_len with no context across "
            "windows; nll_per_note: the grid cells only (one voice at one step)",
        }


def safe(name: str) -> str:
    """A piece name as a file name (a MIDI path's folders become underscores)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
