"""Attention inspection: the cost of recording statistics, and of the hook when nothing records.

A ``MultiHeadAttention`` (d_model 256, 8 heads, batch 1, reference backend) on the CPU, forward only
under ``no_grad``, at L = 1024 and 4096 (and L = 64, where a fixed per-forward cost shows most):

- **stats ÷ plain**: a forward inside ``core.inspect.record(mha)`` (statistics mode: weights
  materialised a block of queries at a time, then entropy, top-k, distance, sinks) against the same
  forward outside it. Goal ≤ 1.5×.
- **floor ÷ plain**: the weights alone, with no statistic: ``softmax(q kᵀ/√d) v`` as three ops a
  block of queries at a time (the blocks of the stats forward), projections included. Any recording
  that materialises the weights through PyTorch ops pays this much; the stats forward adds its
  statistics on top.
- **peak memory** of each, against the size of one layer's weights ``[B, H, L, L]`` fp32. Goal: the
  stats forward needs no more than that.
- **inactive overhead**: the module's forward (``core.inspect`` imported, nothing recording) against the
  same computation written without the module (projections, ``core.ops.attention``, output projection)
  — end to end, within timing noise — and the cost of the check the modules run
  (``RECORDER.active is not None``, timed alone) as a share of the forward. Goal < 2 %.

Times are the best of 3 interleaved medians (``median_ms``): the reference machine is shared.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.utils.benchmark as tbench

from benchmarks._harness import (
    THREADS,
    markdown_table,
    median_ms,
    peak_mib,
    serve_peak_request,
)
from core.inspect import record
from core.inspect.blocks import ScoreBlocks
from core.nn import MultiHeadAttention
from core.nn.attention import RECORDER
from core.ops import attention

D_MODEL, HEADS, BATCH = 256, 8, 1
LENGTHS = (64, 1024, 4096)
METHODS = ("plain", "stats", "no hook", "floor")
ROUNDS = 3  # the methods alternate this many times; the best median of each is kept


def spelled_out(
    mha: MultiHeadAttention,
    x: torch.Tensor,
    attend: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """The module's dense self-attention forward without the recorder check: its projections
    around ``attend(q, k, v)`` (``[B, H, L, D]`` each)."""
    q, k, v = (
        proj(x).unflatten(-1, (mha.n_heads, mha.d_head)).transpose(1, 2)
        for proj in (mha.q_proj, mha.k_proj, mha.v_proj)
    )
    return mha.out_proj(attend(q, k, v).transpose(1, 2).flatten(-2))


def weights_by_blocks(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q kᵀ/√d) v`` with the weights materialised a block of queries at a time (the
    stats forward's blocks) and nothing recorded."""
    k_t = k.transpose(-1, -2) * q.shape[-1] ** -0.5
    step = ScoreBlocks(q, k).rows_per_block
    blocks = [
        torch.softmax(q[:, :, i : i + step] @ k_t, -1) @ v for i in range(0, q.shape[2], step)
    ]
    return torch.cat(blocks, 2)


def check_ns() -> float:
    """Nanoseconds of the recorder check the modules run in every forward."""
    timer = tbench.Timer(stmt="slot.active is not None", globals={"slot": RECORDER})
    return timer.blocked_autorange(min_run_time=0.5).median * 1e9


def build(case: str) -> Callable[[], None]:
    """A forward closure for ``"<plain|stats|no hook|floor>/<L>"`` with fresh random inputs."""
    method, length = case.split("/")
    torch.manual_seed(int(length))
    mha = MultiHeadAttention(D_MODEL, HEADS, backend="reference").eval()
    x = torch.randn(BATCH, int(length), D_MODEL)

    @torch.no_grad()
    def run() -> None:
        if method == "stats":
            with record(mha):
                mha(x)
        elif method == "plain":
            mha(x)
        elif method == "floor":
            spelled_out(mha, x, weights_by_blocks)
        else:
            spelled_out(mha, x, lambda q, k, v: attention(q, k, v, backend=mha.backend))

    return run


def main() -> None:
    if serve_peak_request(build):
        return
    rows, check = [], check_ns()
    for length in LENGTHS:
        runs = {method: build(f"{method}/{length}") for method in METHODS}
        best = dict.fromkeys(METHODS, float("inf"))
        for _ in range(ROUNDS):  # interleaved, so a burst of other work cannot favour one method
            for method, run in runs.items():
                best[method] = min(best[method], median_ms(run))
        t_plain, t_stats, t_bare, t_floor = (best[method] for method in METHODS)
        m_plain, m_stats = (peak_mib(__file__, f"{m}/{length}") for m in METHODS[:2])
        weights_mib = BATCH * HEADS * length**2 * 4 / 2**20
        overhead = 100.0 * (t_plain / t_bare - 1.0)
        check_share = 100.0 * check * 1e-6 / t_plain
        times = [length, t_plain, t_stats, t_stats / t_plain, t_floor / t_plain]
        rows.append([*times, m_plain, m_stats, weights_mib, overhead, check_share])
    print(
        f"\n### Attention inspection, CPU ({THREADS} threads), MultiHeadAttention d_model={D_MODEL} "
        f"H={HEADS} B={BATCH}, forward; the recorder check alone: {check:.0f} ns\n"
    )
    headers = [
        "L",
        "plain ms",
        "stats ms",
        "stats ÷ plain",
        "floor ÷ plain",
        "plain MiB",
        "stats MiB",
        "one layer's weights MiB",
        "inactive overhead %",
        "check %",
    ]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
