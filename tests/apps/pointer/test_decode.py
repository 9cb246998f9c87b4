"""Beam search against independent references: a plain greedy loop (beam width 1), every output
enumerated (a beam wide enough to keep them all), and each instance decoded alone (padding)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from apps.pointer.constraints import EOS, advance, allowed, start_state, teacher_forcing_masks
from apps.pointer.decode import beam_search, max_decode_steps
from apps.pointer.generate import generate
from apps.pointer.model import Encoded, LSTMState, PointerConfig, PointerNetwork

from .padding import pad_outputs, pad_points

PROBLEMS = ["convex_hull", "delaunay", "tsp"]


def small_network(seed: int, encoder: str = "lstm") -> PointerNetwork:
    """A random network; PyTorch's initialisation (not ±0.08), whose logits are far enough apart
    that float rounding never decides an argmax."""
    torch.manual_seed(seed)
    config = PointerConfig(hidden_dim=32, encoder=encoder, num_heads=4, ff_dim=64, init_range=None)
    return PointerNetwork(config).eval()


class HistoryPointer(PointerNetwork):
    """A test double whose choices hinge on the history, which an untrained network's hardly do: a
    fixed random score for every (previous, next) pair, peaked after some positions and flat after
    others (so the best next step can lead into an unlikely continuation), minus 2 per earlier
    visit of ``next``, counted in the decoder state (so beam search must carry each beam's state)."""

    MAX_WIDTH = 16

    def __init__(self, seed: int) -> None:
        super().__init__(PointerConfig(hidden_dim=self.MAX_WIDTH))
        generator = torch.Generator().manual_seed(seed)
        width = self.MAX_WIDTH
        sharpness = torch.randn(width + 1, 1, generator=generator).exp()
        # row 0: the start; row p + 1: after position p
        self.transition = sharpness * torch.randn(width + 1, width, generator=generator)

    def encode(self, points: torch.Tensor, point_mask: torch.Tensor) -> Encoded:
        encoded = super().encode(points, point_mask)
        no_visits = torch.zeros_like(encoded.state[0])
        return dataclasses.replace(encoded, state=(no_visits, no_visits))

    def step(
        self, encoded: Encoded, previous: torch.Tensor, state: LSTMState, allowed: torch.Tensor
    ) -> tuple[torch.Tensor, LSTMState]:
        visits, unused = state
        width = allowed.shape[1]
        visited = F.one_hot(previous.clamp(min=0), self.MAX_WIDTH) * (previous >= 0)[:, None]
        visits = visits + visited[None]
        scores = self.transition[previous + 1, :width] - 2.0 * visits[0, :, :width]
        return scores.masked_fill(~allowed, float("-inf")), (visits, unused)


@torch.no_grad()
def plain_greedy(
    model: PointerNetwork,
    points: torch.Tensor,
    point_mask: torch.Tensor,
    problem: str,
    constrained: bool,
) -> list[np.ndarray]:
    """At each step the most likely allowed position, until every row has emitted EOS."""
    rules = problem if constrained else "none"
    encoded = model.encode(points, point_mask)
    state, decoder_state = start_state(encoded.key_mask), encoded.state
    previous = torch.full((len(points),), -1)
    chosen = []
    for _ in range(max_decode_steps(problem, points.shape[1])):
        logits, decoder_state = model.step(encoded, previous, decoder_state, allowed(rules, state))
        previous = logits.argmax(-1)
        chosen.append(previous)
        state = advance(rules, state, previous)
        if bool(state["finished"].all()):
            break
    outputs = []
    for row in torch.stack(chosen, 1).numpy():
        ends = np.flatnonzero(row == EOS)
        outputs.append(row[: ends[0]] if ends.size else row)
    return outputs


@torch.no_grad()
def log_likelihood(
    model: PointerNetwork,
    points: torch.Tensor,
    point_mask: torch.Tensor,
    problem: str,
    outputs: list[np.ndarray],
) -> torch.Tensor:
    """Log-probability [B] of each output followed by EOS under the constrained decoding rules,
    stepping the decoder along the output."""
    targets = pad_outputs(outputs)
    masks = teacher_forcing_masks(problem, F.pad(point_mask, (1, 0), value=True), targets)
    encoded = model.encode(points, point_mask)
    decoder_state, previous = encoded.state, torch.full((len(outputs),), -1)
    total = torch.zeros(len(outputs))
    for step in range(targets.shape[1]):
        logits, decoder_state = model.step(encoded, previous, decoder_state, masks[:, step])
        previous = targets[:, step].clamp(min=0)
        log_p = logits.log_softmax(-1).gather(1, previous[:, None])[:, 0]
        total += torch.where(targets[:, step] >= 0, log_p, 0.0)
    return total


def decode_both_ways(model, problem, constrained, seed):
    points, point_mask = pad_points(generate(problem, (4, 9), 12, seed=seed)[0])
    assert not point_mask.all()  # sizes differ, so some rows are padded
    greedy = plain_greedy(model, points, point_mask, problem, constrained)
    beam = beam_search(model, points, point_mask, problem, beam_width=1, constrained=constrained)
    return beam, greedy


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("constrained", [True, False])
@pytest.mark.parametrize("encoder", ["lstm", "transformer"])
def test_beam_width_one_is_plain_greedy(problem, constrained, encoder):
    beam, greedy = decode_both_ways(small_network(0, encoder), problem, constrained, seed=4)
    assert len(beam) == len(greedy) == 12
    for ours, reference in zip(beam, greedy, strict=True):
        np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("constrained", [True, False])
def test_beam_width_one_is_plain_greedy_when_history_matters(problem, constrained):
    beam, greedy = decode_both_ways(HistoryPointer(seed=3), problem, constrained, seed=5)
    for ours, reference in zip(beam, greedy, strict=True):
        np.testing.assert_array_equal(ours, reference)
    assert max(len(o) for o in greedy) > 3  # not a trivial immediate EOS


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("beam_width", [1, 3])
def test_padding_does_not_change_the_decoded_output(problem, beam_width):
    model = small_network(1)
    point_sets = generate(problem, (4, 9), 6, seed=8)[0]
    together = beam_search(model, *pad_points(point_sets), problem, beam_width)
    for point_set, output in zip(point_sets, together, strict=True):
        [alone] = beam_search(model, *pad_points([point_set]), problem, beam_width)
        np.testing.assert_array_equal(output, alone)


def every_valid_output(problem: str, n: int) -> list[np.ndarray]:
    """All outputs the constrained rules allow over n points (hull: closed cycles of ≥ 3 points;
    tsp: closed tours through all n)."""
    sizes = range(3, n + 1) if problem == "convex_hull" else [n]
    cycles = itertools.chain.from_iterable(
        itertools.permutations(range(1, n + 1), size) for size in sizes
    )
    return [np.array([*cycle, cycle[0]]) for cycle in cycles]


@pytest.mark.parametrize("problem", ["convex_hull", "tsp"])
@pytest.mark.parametrize("history", [False, True])
def test_a_beam_that_keeps_everything_finds_the_most_likely_output(problem, history):
    """With a beam as wide as the number of valid outputs nothing is pruned, so beam search returns
    the most likely one — at least as likely as greedy's."""
    model = HistoryPointer(seed=2) if history else small_network(2)
    point_sets = generate(problem, (5, 5), 4, seed=6)[0]
    points, point_mask = pad_points(point_sets)
    candidates = every_valid_output(problem, 5)  # 5! = 120 tours; 60 + 120 + 120 = 300 hulls
    most_likely = torch.stack(
        [
            log_likelihood(model, *pad_points([p] * len(candidates)), problem, candidates).max()
            for p in point_sets
        ]
    )
    exhaustive = beam_search(model, points, point_mask, problem, len(candidates))
    found = log_likelihood(model, points, point_mask, problem, exhaustive)
    torch.testing.assert_close(found, most_likely)
    greedy = beam_search(model, points, point_mask, problem, 1)
    greedy_found = log_likelihood(model, points, point_mask, problem, greedy)
    assert (greedy_found <= found + 1e-5).all()
    if history:
        assert (greedy_found < found - 0.1).any()  # and greedy does miss it here


@pytest.mark.parametrize("problem", PROBLEMS)
def test_a_wider_beam_is_at_least_as_likely_as_greedy(problem):
    """Not a theorem for every input, but what a wider beam is for; here greedy is myopic."""
    model = HistoryPointer(seed=1)
    points, point_mask = pad_points(generate(problem, (4, 9), 16, seed=9)[0])
    greedy = beam_search(model, points, point_mask, problem, 1)
    beam = beam_search(model, points, point_mask, problem, 5)
    gain = log_likelihood(model, points, point_mask, problem, beam) - log_likelihood(
        model, points, point_mask, problem, greedy
    )
    assert (gain >= -1e-4).all()
    assert (gain > 0.1).any()  # the wider beam does find more likely outputs
