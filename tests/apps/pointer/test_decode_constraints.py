"""Constrained beam search always emits valid outputs; teacher-forcing masks admit the targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from apps.pointer.constraints import teacher_forcing_masks
from apps.pointer.data import collate
from apps.pointer.decode import beam_search
from apps.pointer.generate import generate
from apps.pointer.metrics import score, summarize
from apps.pointer.model import PointerNetwork


@pytest.mark.parametrize("problem", ["tsp", "convex_hull", "delaunay"])
@pytest.mark.parametrize("beam_width", [1, 4])
def test_constrained_decoding_is_valid_for_an_untrained_model(problem, beam_width):
    torch.manual_seed(0)
    points, targets = generate(problem, (4, 9), 24, seed=3)
    batch = collate(list(zip(points, targets, strict=True)))
    model = PointerNetwork(hidden_dim=32).eval()
    outputs = beam_search(model, batch["points"], batch["point_mask"], problem, beam_width)
    records = score(problem, points, outputs, targets)
    if problem == "convex_hull":  # self-intersection is the one thing decoding cannot rule out
        assert all(len(o) >= 4 and o[0] == o[-1] for o in outputs)
    else:
        assert summarize(problem, records)["invalid_rate"] == 0.0
    if problem == "tsp":
        for p, o in zip(points, outputs, strict=True):
            assert sorted(o[:-1].tolist()) == list(range(1, len(p) + 1)) and o[0] == o[-1]


@pytest.mark.parametrize("problem", ["tsp", "convex_hull", "delaunay"])
def test_teacher_forcing_masks_admit_every_target(problem):
    points, targets = generate(problem, (4, 9), 16, seed=5)
    batch = collate(list(zip(points, targets, strict=True)))
    key_mask = F.pad(batch["point_mask"], (1, 0), value=True)
    masks = teacher_forcing_masks(problem, key_mask, batch["targets"])
    real = batch["targets"] >= 0
    admitted = masks.gather(2, batch["targets"].clamp(min=0)[..., None])[..., 0]
    assert admitted[real].all()


def test_beam_search_is_at_least_as_likely_as_greedy():
    torch.manual_seed(1)
    points, _ = generate("tsp", (8, 8), 16, seed=9)
    batch = collate([(p, None) for p in points])
    model = PointerNetwork(hidden_dim=32).eval()

    def log_likelihood(outputs):
        targets = torch.tensor(np.stack([np.append(o, 0) for o in outputs]))
        key_mask = F.pad(batch["point_mask"], (1, 0), value=True)
        allowed = teacher_forcing_masks("tsp", key_mask, targets)
        with torch.no_grad():
            logits = model(batch["points"], batch["point_mask"], targets, allowed)
        return logits.log_softmax(-1).gather(2, targets[..., None]).sum((1, 2))

    greedy = beam_search(model, batch["points"], batch["point_mask"], "tsp", 1)
    beam = beam_search(model, batch["points"], batch["point_mask"], "tsp", 5)
    assert (log_likelihood(beam) >= log_likelihood(greedy) - 1e-4).all()


class LowIndexPreferringNetwork(PointerNetwork):
    """Always prefers the lowest allowed point and dislikes EOS: left alone it would emit the triangle
    (1, 2, 3) over and over."""

    def step(self, encoded, previous, state, allowed):
        width = allowed.shape[1]
        preference = -torch.arange(width, dtype=torch.float32).expand(allowed.shape[0], -1).clone()
        preference[:, 0] = -1e3
        return preference.masked_fill(~allowed, float("-inf")), state


def test_delaunay_decoding_never_repeats_a_triangle():
    points, _ = generate("delaunay", (6, 6), 4, seed=2)
    batch = collate([(p, None) for p in points])
    model = LowIndexPreferringNetwork(hidden_dim=16).eval()
    for beam_width in (1, 3):
        outputs = beam_search(model, batch["points"], batch["point_mask"], "delaunay", beam_width)
        for output in outputs:
            triangles = [tuple(sorted(t)) for t in output.reshape(-1, 3).tolist()]
            assert len(triangles) == 2 * 6 - 5  # runs to the Euler bound, never stuck
            assert len(set(triangles)) == len(triangles)
