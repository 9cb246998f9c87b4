"""Constrained beam search always emits valid outputs; teacher-forcing masks admit the targets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from apps.pointer.constraints import teacher_forcing_masks
from apps.pointer.decode import beam_search
from apps.pointer.generate import generate
from apps.pointer.metrics import score
from apps.pointer.model import PointerConfig, PointerNetwork

from .padding import pad_outputs, pad_points


@pytest.mark.parametrize("problem", ["tsp", "convex_hull", "delaunay"])
@pytest.mark.parametrize("beam_width", [1, 4])
def test_constrained_decoding_is_valid_for_an_untrained_model(problem, beam_width):
    torch.manual_seed(0)
    points, targets = generate(problem, (4, 9), 24, seed=3)
    model = PointerNetwork(PointerConfig(hidden_dim=32)).eval()
    outputs = beam_search(model, *pad_points(points), problem, beam_width)
    records = score(problem, points, outputs, targets)
    if problem == "convex_hull":  # self-intersection is the one thing decoding cannot rule out
        assert all(len(o) >= 4 and o[0] == o[-1] for o in outputs)
    else:
        assert all(record["valid"] for record in records)
    if problem == "tsp":
        for p, o in zip(points, outputs, strict=True):
            assert sorted(o[:-1].tolist()) == list(range(1, len(p) + 1)) and o[0] == o[-1]


@pytest.mark.parametrize("problem", ["tsp", "convex_hull", "delaunay"])
def test_teacher_forcing_masks_admit_every_target(problem):
    points, targets = generate(problem, (4, 9), 16, seed=5)
    point_mask, padded_targets = pad_points(points)[1], pad_outputs(targets)
    key_mask = F.pad(point_mask, (1, 0), value=True)
    masks = teacher_forcing_masks(problem, key_mask, padded_targets)
    real = padded_targets >= 0
    admitted = masks.gather(2, padded_targets.clamp(min=0)[..., None])[..., 0]
    assert admitted[real].all()


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
    model = LowIndexPreferringNetwork(PointerConfig(hidden_dim=16)).eval()
    for beam_width in (1, 3):
        outputs = beam_search(model, *pad_points(points), "delaunay", beam_width)
        for output in outputs:
            triangles = [tuple(sorted(t)) for t in output.reshape(-1, 3).tolist()]
            assert len(triangles) == 2 * 6 - 5  # runs to the Euler bound, never stuck
            assert len(set(triangles)) == len(triangles)
