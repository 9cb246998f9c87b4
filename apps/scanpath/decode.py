"""Autoregressive scanpath generation with OAT: greedy (the most likely object at every step) or
sampled (from the pointer distribution, with a seeded generator so runs repeat).

The encoder runs once per display; the decoder runs one step at a time with key/value caches. As in
the official code the first fixation cannot be EOS; a scanpath ends at EOS or after ``max_steps``.
"""

from __future__ import annotations

import numpy as np
import torch

from apps.scanpath.model import EOS, OAT, Encoded


@torch.no_grad()
def generate(
    model: OAT,
    encoded: Encoded,
    scene_index: torch.Tensor,
    max_steps: int,
    sample: bool = False,
    generator: torch.Generator | None = None,
) -> list[np.ndarray]:
    """One scanpath per entry of ``scene_index [P]`` (displays of ``encoded``): P int64 arrays of
    object indices, EOS not included."""
    P = len(scene_index)
    caches = model.decoder.new_caches(P, max_steps, scene_index.device, encoded.memory.dtype)
    previous = torch.zeros(P, 1, dtype=torch.long, device=scene_index.device)  # BOS
    finished = torch.zeros(P, dtype=torch.bool, device=scene_index.device)
    steps = []
    for step in range(max_steps):
        logits = model.decode(encoded, scene_index, previous, caches=caches, offset=step)[:, -1]
        if step == 0:
            logits[:, EOS] = float("-inf")
        if sample:
            probabilities = torch.softmax(logits.float(), dim=-1)
            choice = torch.multinomial(probabilities.cpu(), 1, generator=generator)[:, 0]
            choice = choice.to(logits.device)
        else:
            choice = logits.argmax(-1)
        choice = choice.masked_fill(finished, EOS)
        steps.append(choice)
        finished |= choice == EOS
        if bool(finished.all()):
            break
        previous = choice[:, None]
    paths = torch.stack(steps, 1).cpu().numpy()
    outputs = []
    for row in paths:
        ends = np.flatnonzero(row == EOS)
        outputs.append((row[: ends[0]] if ends.size else row) - 1)
    return outputs
