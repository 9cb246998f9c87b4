"""Likelihood metrics of symbolic music models: negative log-likelihood per token (nats), its
perplexity, and on the JSB grid NLL per note (per grid cell: one voice at one 16th step, the
Music Transformer's note-wise NLL, Table 1)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from apps.music.tokens import PAD


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-position NLL ``[B, L]`` of ``targets [B, L]`` under ``logits [B, L, V]`` (0 at PAD)."""
    nll = F.cross_entropy(logits.transpose(1, 2).float(), targets, reduction="none")
    return nll.masked_fill(targets == PAD, 0.0)


class LikelihoodMetrics(Metric):
    """Sums of NLL and counts over tokens (and notes) → ``nll_per_token``, ``perplexity`` and,
    when ``first_note_token`` is set, ``nll_per_note``."""

    full_state_update = False

    def __init__(self, first_note_token: int | None) -> None:
        super().__init__()
        self.first_note_token = first_note_token
        for name in ("token_nll", "tokens", "note_nll", "notes"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, nll: torch.Tensor, targets: torch.Tensor) -> None:
        """``nll [B, L]`` from :func:`token_nll` and its ``targets [B, L]``."""
        real = targets != PAD
        self.token_nll += nll[real].double().sum()
        self.tokens += real.sum()
        if self.first_note_token is not None:
            notes = targets >= self.first_note_token
            self.note_nll += nll[notes].double().sum()
            self.notes += notes.sum()

    def compute(self) -> dict[str, float]:
        per_token = float(self.token_nll / self.tokens.clamp(min=1))
        out = {"nll_per_token": per_token, "perplexity": math.exp(min(per_token, 50.0))}
        if self.first_note_token is not None:
            out["nll_per_note"] = float(self.note_nll / self.notes.clamp(min=1))
        return out
