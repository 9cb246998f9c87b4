"""Which positions may come next: the validity rules of each problem as a batched state machine.

Key positions are ``0`` = end of sequence (EOS) and ``1..N`` = the points. The same rules serve three
uses: constrained greedy/beam decoding, the masks of teacher-forced training (``mask_visited``), and — with
``problem="none"`` — unconstrained decoding where only padding is excluded.

* convex hull: any point first; then unvisited points, or the first point again (closing) once three
  are out; after closing only EOS.
* tsp: any city first; then unvisited cities; when all are out, the first city; then EOS.
* delaunay: triangles of three distinct points; EOS only between triangles (not first) and forced after
  the Euler bound of 2n − 5 triangles. Repeated triangles are not prevented.
"""

from __future__ import annotations

from typing import Literal

import torch

Problem = Literal["convex_hull", "delaunay", "tsp", "none"]
PROBLEMS = ("convex_hull", "delaunay", "tsp")
EOS = 0

State = dict[str, torch.Tensor]


def start_state(key_mask: torch.Tensor) -> State:
    """Initial state for a batch; ``key_mask`` [B, N + 1] is True at EOS and at real points."""
    batch = key_mask.shape[0]
    zeros = torch.zeros(batch, dtype=torch.long, device=key_mask.device)
    return {
        "key_mask": key_mask,
        "visited": torch.zeros_like(key_mask),
        "first": zeros,
        "steps": zeros,
        "finished": torch.zeros(batch, dtype=torch.bool, device=key_mask.device),
        "n": key_mask[:, 1:].sum(-1),
    }


def allowed(problem: Problem, state: State) -> torch.Tensor:
    """Positions [B, N + 1] that may come next (never empty; a finished row allows only EOS)."""
    key_mask, visited, steps = state["key_mask"], state["visited"], state["steps"]
    points = key_mask.clone()
    points[:, EOS] = False
    only_eos = torch.zeros_like(key_mask)
    only_eos[:, EOS] = True
    first = torch.zeros_like(key_mask).scatter_(1, state["first"][:, None], True)
    at_start = (steps == 0)[:, None]
    if problem == "none":
        result = key_mask
    elif problem in ("convex_hull", "tsp"):
        count = visited[:, 1:].sum(-1)
        may_close = count >= 3 if problem == "convex_hull" else count == state["n"]
        open_points = points & ~visited
        next_points = torch.where(may_close[:, None], open_points | first, open_points)
        closed = steps > count  # the first point came back
        result = torch.where(at_start, points, next_points)
        result = torch.where(closed[:, None], only_eos, result)
    elif problem == "delaunay":
        in_triangle = (steps % 3)[:, None]
        boundary = points | (only_eos & ~at_start)
        result = torch.where(in_triangle == 0, boundary, points & ~visited)
        full = steps >= 3 * (2 * state["n"] - 5).clamp(min=1)
        result = torch.where(full[:, None], only_eos, result)
    else:
        raise ValueError(f"unknown problem {problem!r}; expected one of {(*PROBLEMS, 'none')}")
    return torch.where(state["finished"][:, None], only_eos, result)


def advance(problem: Problem, state: State, choice: torch.Tensor) -> State:
    """State after emitting ``choice`` [B] (key positions)."""
    visited = state["visited"]
    if problem == "delaunay":
        # visited holds the current triangle's points only
        visited = torch.where(
            (state["steps"] % 3 == 0)[:, None], torch.zeros_like(visited), visited
        )
    visited = visited.scatter(1, choice[:, None], True)
    return {
        **state,
        "visited": visited,
        "first": torch.where(state["steps"] == 0, choice, state["first"]),
        "steps": state["steps"] + 1,
        "finished": state["finished"] | (choice == EOS),
    }


def reorder(state: State, index: torch.Tensor) -> State:
    """Rows of ``state`` picked by ``index`` (beam search keeps the surviving beams)."""
    return {name: value[index] for name, value in state.items()}


def teacher_forcing_masks(
    problem: Problem, key_mask: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Allowed positions [B, T, N + 1] at every step of the given (valid) ``targets`` [B, T]; padded
    target steps (negative) keep the plain key mask."""
    state = start_state(key_mask)
    masks = []
    for step in range(targets.shape[1]):
        masks.append(allowed(problem, state))
        choice = targets[:, step].clamp(min=0)
        state = advance(problem, state, choice)
    masks_BTN = torch.stack(masks, 1)
    return torch.where((targets < 0)[..., None], key_mask[:, None, :], masks_BTN)
