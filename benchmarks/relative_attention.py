"""Music Transformer relative attention: the skewing trick (ours) vs Shaw et al.'s ``[L, L, D]`` tensor.

Forward + backward on the CPU at L = 512, 1024, 2048 (B=1, H=2, D=64; one embedding table per head, as
in the Music Transformer, so Shaw's tensor is ``[H, L, L, D]``; both methods scale with H alike). Two
rows per length: the relative term ``S_rel`` alone, and the whole attention.
Targets at L = 1024: relative-term memory ≥ 8× smaller and time ≥ 3× faster than Shaw.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from benchmarks._harness import (
    THREADS,
    backward_step,
    markdown_table,
    median_ms,
    peak_mib,
    serve_peak_request,
)
from core.ops import attention, relative_attention
from core.ops.naive import shaw_relative_logits
from core.ops.relative_attention import relative_logits

BATCH, HEADS, HEAD_DIM = 1, 2, 64
LENGTHS = (512, 1024, 2048)
PARTS = ("relative term S_rel", "attention")


def shaw_logits(q: torch.Tensor, rel_emb: torch.Tensor) -> torch.Tensor:
    return shaw_relative_logits(q, rel_emb, causal=False)


def skew_logits(q: torch.Tensor, rel_emb: torch.Tensor) -> torch.Tensor:
    return relative_logits(q, rel_emb, causal=False)


def shaw_attention(q, k, v, rel_emb):
    scale = 1 / math.sqrt(q.shape[-1])
    bias = shaw_logits(q, rel_emb) * scale
    return attention(q, k, v, bias=bias, scale=scale, backend="reference")


def skew_attention(q, k, v, rel_emb):
    return relative_attention(q, k, v, rel_emb, backend="reference")


def build(case: str) -> Callable[[], None]:
    """A fwd+bwd closure for ``"<method>/<part>/<L>"`` with fresh random inputs."""
    method, part, length = case.split("/")
    gen = torch.Generator().manual_seed(int(length))
    q, k, v = (
        torch.randn(BATCH, HEADS, int(length), HEAD_DIM, generator=gen).requires_grad_()
        for _ in range(3)
    )
    rel_emb = torch.randn(HEADS, 2 * int(length) - 1, HEAD_DIM, generator=gen).requires_grad_()
    if part == PARTS[0]:
        return backward_step(skew_logits if method == "skew" else shaw_logits, q, rel_emb)
    return backward_step(skew_attention if method == "skew" else shaw_attention, q, k, v, rel_emb)


def main() -> None:
    if serve_peak_request(build):
        return
    rows = []
    for length in LENGTHS:
        for part in PARTS:
            ours, shaw = f"skew/{part}/{length}", f"shaw/{part}/{length}"
            t_ours, t_shaw = median_ms(build(ours)), median_ms(build(shaw))
            m_ours, m_shaw = peak_mib(__file__, ours), peak_mib(__file__, shaw)
            rows.append(
                [length, part, t_ours, t_shaw, t_shaw / t_ours, m_ours, m_shaw, m_shaw / m_ours]
            )
    print(
        f"\n### Relative attention fwd+bwd, CPU ({THREADS} threads), B={BATCH} H={HEADS} D={HEAD_DIM}\n"
    )
    headers = ["L", "what", "skew ms", "Shaw ms", "speed-up ×", "skew MiB", "Shaw MiB", "memory ÷"]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
