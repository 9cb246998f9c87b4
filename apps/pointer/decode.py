"""Greedy and beam-search decoding of a Pointer Network, optionally constrained to valid outputs.

Greedy is beam search with one beam. With ``constrained=True`` every step is restricted by the problem's
rules (:mod:`apps.pointer.constraints`): no repeated city, return to the start, close the hull, three
distinct points per triangle and no triangle twice. Unconstrained decoding only excludes padding, so
invalid outputs can occur and are counted by the metrics.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from apps.pointer.constraints import EOS, Problem, advance, allowed, reorder, start_state
from apps.pointer.model import PointerNetwork


def max_decode_steps(problem: Problem, num_points: int) -> int:
    """Longest output (EOS included) a problem allows for ``num_points`` points."""
    if problem == "delaunay":
        return 3 * max(2 * num_points - 5, 1) + 1
    return num_points + 2


@torch.no_grad()
def beam_search(
    model: PointerNetwork,
    points: torch.Tensor,
    point_mask: torch.Tensor,
    problem: Problem,
    beam_width: int = 1,
    constrained: bool = True,
) -> list[np.ndarray]:
    """Most likely output per instance: points [B, N, 2], point_mask [B, N] → B arrays of 1-based
    point indices (EOS not included). ``beam_width=1`` is greedy decoding."""
    batch, num_points = point_mask.shape
    rules: Problem = problem if constrained else "none"
    K, width = beam_width, num_points + 1
    encoded = model.encode(points, point_mask).repeat(K)
    state = start_state(encoded.key_mask)
    lstm_state = encoded.state
    previous = torch.full((batch * K,), -1, dtype=torch.long, device=points.device)
    scores = torch.full((batch, K), float("-inf"), device=points.device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    sequences = previous.new_zeros(batch * K, 0)
    eos_only = torch.full((width,), float("-inf"), device=points.device)
    eos_only[EOS] = 0.0
    for _ in range(max_decode_steps(problem, num_points)):
        logits, lstm_state = model.step(encoded, previous, lstm_state, allowed(rules, state))
        log_p = F.log_softmax(logits, -1)
        log_p = torch.where(state["finished"][:, None], eos_only, log_p)  # finished beams stay put
        total = (scores.reshape(-1, 1) + log_p).reshape(batch, K * width)
        scores, flat = total.topk(K, -1)
        rows = (torch.arange(batch, device=points.device)[:, None] * K + flat // width).reshape(-1)
        previous = (flat % width).reshape(-1)
        state = advance(rules, reorder(state, rows), previous)
        lstm_state = tuple(s[:, rows] for s in lstm_state)
        sequences = torch.cat([sequences[rows], previous[:, None]], 1)
        if bool(state["finished"].all()):
            break
    best = sequences.reshape(batch, K, -1)[:, 0].cpu().numpy()
    outputs = []
    for row in best:
        ends = np.flatnonzero(row == EOS)
        outputs.append(row[: ends[0]] if ends.size else row)
    return outputs
