"""Sampling from the Music Transformer: temperature, top-k and nucleus (top-p) filtering, and
incremental decoding with a key/value cache (each new token attends the cached keys: generating N
tokens costs O(N·L) attention work instead of re-running the whole prefix every step)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from apps.music.model import MusicTransformer
from apps.music.tokens import END, PAD


@dataclass(frozen=True)
class Sampling:
    """How tokens are drawn: ``temperature`` divides the logits; ``top_k`` (0: off) keeps the k
    likeliest; ``top_p`` (1.0: off) keeps the smallest set whose probability reaches p."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature <= 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ValueError(
                f"sampling needs temperature > 0, top_k ≥ 0 and 0 < top_p ≤ 1; got {self}"
            )


def filter_logits(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """``logits [B, V]`` scaled by the temperature, with the tokens outside the top-k and the top-p
    nucleus set to −inf (the likeliest token always survives)."""
    logits = logits / sampling.temperature
    if 0 < sampling.top_k < logits.shape[-1]:
        kth = logits.topk(sampling.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)
        before = ordered.softmax(-1).cumsum(-1) - ordered.softmax(-1)  # mass above each token
        drop = (before >= sampling.top_p).scatter(-1, order, before >= sampling.top_p)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


@torch.no_grad()
def generate(
    model: MusicTransformer,
    primer: torch.Tensor,
    steps: int,
    sampling: Sampling = Sampling(),
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Continue ``primer [B, P]`` (each row starts with START) by up to ``steps`` sampled tokens.

    A row that samples END stops; its later positions are PAD. ``use_cache=False`` re-runs the
    whole sequence every step (the cost a cache saves; kept for the benchmark and the tests).
    Returns ``[B, P + n]``, n ≤ steps (generation ends early once every row has ended).
    """
    if primer.dim() != 2 or primer.shape[1] < 1:
        raise ValueError(f"primer must be [B, P] with P ≥ 1, got shape {tuple(primer.shape)}")
    if primer.shape[1] + steps > model.max_len:
        raise ValueError(
            f"primer ({primer.shape[1]}) + steps ({steps}) exceed the model's max_len "
            f"{model.max_len}"
        )
    was_training = model.training
    model.eval()
    tokens, done = primer, torch.zeros(len(primer), dtype=torch.bool, device=primer.device)
    caches = model.new_caches(len(primer), primer.shape[1] + steps) if use_cache else None
    step_input = primer
    for _ in tqdm(range(steps), desc="generating", unit="token", disable=not progress):
        logits = model(step_input if use_cache else tokens, caches)[:, -1]
        probabilities = filter_logits(logits.float(), sampling).softmax(-1)
        drawn = torch.multinomial(probabilities, 1, generator=generator)
        drawn[done] = PAD
        tokens = torch.cat([tokens, drawn], 1)
        done |= drawn[:, 0] == END
        if done.all():
            break
        step_input = drawn
    model.train(was_training)
    return tokens
