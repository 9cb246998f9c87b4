"""Which positions may come next: the validity rules of each problem as a batched state machine.

Key positions are ``0`` = end of sequence (EOS) and ``1..N`` = the points. The same rules serve three
uses: constrained greedy/beam decoding, the masks of teacher-forced training (``mask_visited``), and — with
``problem="none"`` — unconstrained decoding where only padding is excluded.

* convex hull: any point first; then unvisited points, or the first point again (closing) once three
  are out; after closing only EOS.
* tsp: any city first; then unvisited cities; when all are out, the first city; then EOS.
* delaunay: triangles of three distinct points, none repeated (in any vertex order); EOS only between
  triangles (not first) and forced after the Euler bound of 2n − 5 triangles.
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
        "triangle": torch.zeros(batch, 2, dtype=torch.long, device=key_mask.device),
        "emitted": torch.zeros(batch, 0, dtype=torch.long, device=key_mask.device),
    }


def triangle_codes(corners: torch.Tensor, width: int) -> torch.Tensor:
    """One integer per unordered triangle: ``corners`` [..., 3] key positions (any order) → [...]."""
    a, b, c = corners.sort(-1).values.unbind(-1)
    return (a * width + b) * width + c


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
        result = result & ~exhausted(state, steps % 3)
        full = steps >= 3 * (2 * state["n"] - 5).clamp(min=1)
        result = torch.where(full[:, None], only_eos, result)
    else:
        raise ValueError(f"unknown problem {problem!r}; expected one of {(*PROBLEMS, 'none')}")
    return torch.where(state["finished"][:, None], only_eos, result)


def exhausted(state: State, corner: torch.Tensor) -> torch.Tensor:
    """[B, N + 1]: True where choosing that point as the current triangle's next corner can only
    repeat emitted triangles — a first corner already in all C(n − 1, 2) triangles through it, a second
    forming a pair already in all n − 2, a third closing an emitted triangle. Looking ahead this way,
    decoding never reaches a corner with nothing left to choose."""
    width, n = state["key_mask"].shape[1], state["n"][:, None]
    emitted = state["emitted"]  # [B, M] triangle codes
    corners = torch.stack([emitted // width**2, emitted // width % width, emitted % width], -1)
    contains = (corners[..., None] == torch.arange(width, device=emitted.device)).any(
        -2
    )  # [B, M, W]
    a, b = state["triangle"].unbind(-1)
    with_a = contains.gather(2, a[:, None, None].expand(-1, contains.shape[1], 1))  # [B, M, 1]
    with_ab = with_a & contains.gather(2, b[:, None, None].expand(-1, contains.shape[1], 1))
    first = contains.sum(1) >= (n - 1) * (n - 2) // 2
    second = (contains & with_a).sum(1) >= n - 2
    third = (contains & with_ab).sum(1) > 0
    choose = corner[:, None]
    return torch.where(choose == 0, first, torch.where(choose == 1, second, third))


def advance(problem: Problem, state: State, choice: torch.Tensor) -> State:
    """State after emitting ``choice`` [B] (key positions)."""
    visited, extra = state["visited"], {}
    if problem == "delaunay":
        corner = state["steps"] % 3
        # visited holds the current triangle's points only
        visited = torch.where((corner == 0)[:, None], torch.zeros_like(visited), visited)
        triangle = state["triangle"].clone()
        triangle[corner == 0, 0] = choice[corner == 0]
        triangle[corner == 1, 1] = choice[corner == 1]
        code = triangle_codes(torch.cat([triangle, choice[:, None]], 1), state["key_mask"].shape[1])
        # every row steps in lockstep, so a triangle completes in all rows at once
        if bool((corner == 2).any()):
            extra["emitted"] = torch.cat([state["emitted"], code[:, None]], 1)
        extra["triangle"] = triangle
    visited = visited.scatter(1, choice[:, None], True)
    return {
        **state,
        **extra,
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
