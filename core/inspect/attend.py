"""The block loop of inspection: ``weights @ v`` one block of queries at a time, each block's
statistics added to the layer's accumulator (and its weights kept when asked) before the next."""

from __future__ import annotations

import torch

from core.inspect.blocks import DistanceBlocks, ScoreBlocks, softmax_with_entropy
from core.inspect.redistribute import redistribute
from core.inspect.stats import StatisticsAccumulator, row_statistics


def attend(
    blocks: ScoreBlocks,
    v: torch.Tensor,
    statistics: StatisticsAccumulator,
    *,
    distance: DistanceBlocks | None = None,
    sink: torch.Tensor | None = None,
    fraction: float = 0.0,
    keep: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``weights @ v`` ``[N, H, Lq, Dv]`` (in the scores' dtype), block by block.

    Args:
        blocks: the scores; v: ``[N, H, Lk, Dv]``.
        statistics: receives every row and, at the end, every instance's sinks.
        distance: ``d(i, j)`` per block for ``mean_distance`` (None: not measured).
        sink: boolean ``[N|1, H, 1, Lk]``: redistribute ``fraction`` of these keys' weight first.
        keep: also return the weights ``[N, H, Lq, Lk]`` (fp32, CPU).
    """
    n, h, len_q, len_k = blocks.shape
    values = v.to(blocks.q.dtype)
    differentiable = torch.is_grad_enabled() and (blocks.requires_grad or v.requires_grad)
    kept = torch.empty(n, h, len_q, len_k) if keep else None
    column_sums = values.new_zeros(n, h, len_k)
    rows: dict[str, torch.Tensor] = {}  # per-row statistics of the call, [N, H, Lq] each
    allowed = torch.empty(n, h, len_q, dtype=torch.long, device=values.device)
    buffers = None  # two blocks reused by every block (not under autograd, which keeps them)
    if not differentiable:
        buffers = values.new_empty(2, n * h * blocks.rows_per_block * len_k)
    outs = []
    for start, stop in blocks.blocks():
        out_scores = out_weights = None
        if buffers is not None:
            size, shape = n * h * (stop - start) * len_k, (n, h, stop - start, len_k)
            out_scores, out_weights = (b[:size].view(shape) for b in buffers)
        scores, n_allowed = blocks.block(start, stop, out_scores)
        weights, entropy, top1 = softmax_with_entropy(scores, differentiable, out_weights)
        sees_keys = n_allowed > 0
        if not bool(sees_keys.all()):
            weights = weights * sees_keys.unsqueeze(-1)
        if sink is not None:
            weights = redistribute(weights, sink, fraction)
            entropy = top1 = None
        outs.append(torch.matmul(weights, values))
        seen = weights.detach()
        block_rows = row_statistics(
            seen,
            statistics.top_k,
            entropy=entropy,
            top1=top1,
            distance=None if distance is None else distance(start, stop),
            scratch=None if differentiable else scores,
        )
        for name, value in block_rows.items():
            rows.setdefault(name, values.new_empty(n, h, len_q))[:, :, start:stop] = value
        allowed[:, :, start:stop] = n_allowed
        column_sums += seen.sum(-2)
        if kept is not None:
            kept[:, :, start:stop] = seen
    statistics.add_rows(rows, allowed)
    statistics.add_sinks(column_sums, (allowed > 0).sum(-1))
    return torch.cat(outs, 2), kept


def column_means(blocks: ScoreBlocks) -> torch.Tensor:
    """Mean weight of each key across the queries that see any key: ``[N, H, Lk]`` (a first pass,
    for sink detection)."""
    n, h, _, len_k = blocks.shape
    sums = blocks.q.new_zeros(n, h, len_k)
    rows = blocks.q.new_zeros(n, h)
    with torch.no_grad():
        for start, stop in blocks.blocks():
            scores, n_allowed = blocks.block(start, stop)
            weights = softmax_with_entropy(scores)[0]
            sees_keys = n_allowed > 0
            sums += (weights * sees_keys.unsqueeze(-1)).sum(-2)
            rows += sees_keys.expand(n, h, stop - start).sum(-1)
    return sums / rows.clamp_min(1).unsqueeze(-1)
