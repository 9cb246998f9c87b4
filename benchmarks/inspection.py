"""Attention inspection: the cost of recording statistics, and of the hook when nothing records.

A ``MultiHeadAttention`` (d_model 256, 8 heads, batch 1, reference backend) on the CPU, forward only
under ``no_grad``, at L = 1024 and 4096:

- **stats ÷ plain**: a forward inside ``core.inspect.record(mha)`` (statistics mode: weights
  materialised a block of queries at a time, then entropy, top-k, distance, sinks) against the same
  forward outside it. Goal ≤ 1.5×.
- **peak memory** of each, against the size of one layer's weights ``[B, H, L, L]`` fp32. Goal: the
  stats forward needs no more than that.
- **inactive overhead**: the module's forward (``core.inspect`` imported, nothing recording) against the
  same computation written without the module's recorder check (projections, ``core.ops.attention``,
  output projection). Goal < 2 %.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from benchmarks._harness import (
    THREADS,
    markdown_table,
    median_ms,
    peak_mib,
    serve_peak_request,
)
from core.inspect import record
from core.nn import MultiHeadAttention
from core.ops import attention

D_MODEL, HEADS, BATCH = 256, 8, 1
LENGTHS = (1024, 4096)
METHODS = ("plain", "stats", "no hook")
ROUNDS = 3  # plain and no-hook alternate this many times; the best median of each is kept


def without_hook(mha: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """The module's dense self-attention forward, spelled out without the recorder check."""
    q, k, v = (
        proj(x).unflatten(-1, (mha.n_heads, mha.d_head)).transpose(1, 2)
        for proj in (mha.q_proj, mha.k_proj, mha.v_proj)
    )
    out = attention(q, k, v, backend=mha.backend)
    return mha.out_proj(out.transpose(1, 2).flatten(-2))


def build(case: str) -> Callable[[], None]:
    """A forward closure for ``"<plain|stats|no hook>/<L>"`` with fresh random inputs."""
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
        else:
            without_hook(mha, x)

    return run


def main() -> None:
    if serve_peak_request(build):
        return
    rows = []
    for length in LENGTHS:
        plain, stats, bare = (build(f"{method}/{length}") for method in METHODS)
        t_stats = median_ms(stats)
        t_plain, t_bare = float("inf"), float("inf")
        for _ in range(ROUNDS):
            t_plain, t_bare = min(t_plain, median_ms(plain)), min(t_bare, median_ms(bare))
        m_plain, m_stats = (peak_mib(__file__, f"{m}/{length}") for m in METHODS[:2])
        weights_mib = BATCH * HEADS * length**2 * 4 / 2**20
        overhead = 100.0 * (t_plain / t_bare - 1.0)
        rows.append(
            [length, t_plain, t_stats, t_stats / t_plain, m_plain, m_stats, weights_mib, overhead]
        )
    print(
        f"\n### Attention inspection, CPU ({THREADS} threads), MultiHeadAttention d_model={D_MODEL} "
        f"H={HEADS} B={BATCH}, forward\n"
    )
    headers = [
        "L",
        "plain ms",
        "stats ms",
        "stats ÷ plain",
        "plain MiB",
        "stats MiB",
        "one layer's weights MiB",
        "inactive overhead %",
    ]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
