"""Varlen attention (packed ``[T, H, D]`` + ``cu_seqlens``) vs padded dense attention, DSVT-like sets.

≈30k tokens in 800 windows of 1–150 tokens (exponential sizes, mean ≈37: voxel counts per DSVT set are
mostly small), H=8 heads of D=24 (DSVT's 192 channels). Padding puts every window at Lmax=150 and masks
the padding keys. Target: varlen ≥ 3× faster than padding.
"""

from __future__ import annotations

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
from core.ops import varlen_attention
from core.ops.naive import padded_varlen_attention

WINDOWS, MEAN_SIZE, MAX_SIZE, HEADS, HEAD_DIM = 800, 37.0, 150, 8, 24
PASSES = ("forward", "forward + backward")


def dsvt_like_sizes(gen: torch.Generator) -> torch.Tensor:
    exponential = -MEAN_SIZE * torch.rand(WINDOWS, generator=gen).log()
    return exponential.ceil().clamp(1, MAX_SIZE).long()


def varlen(q, k, v, cu_seqlens):
    return varlen_attention(q, k, v, cu_seqlens, backend="reference")


def problem() -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    sizes = dsvt_like_sizes(gen)
    cu_seqlens = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)]).int()
    q, k, v = (torch.randn(int(sizes.sum()), HEADS, HEAD_DIM, generator=gen) for _ in range(3))
    return q, k, v, cu_seqlens


def build(case: str) -> Callable[[], None]:
    """A closure for ``"<varlen|padded>/<pass>"``."""
    method, which = case.split("/")
    fn = varlen if method == "varlen" else padded_varlen_attention
    q, k, v, cu_seqlens = problem()
    if which == PASSES[0]:
        return lambda: fn(q, k, v, cu_seqlens)
    return backward_step(
        lambda *qkv: fn(*qkv, cu_seqlens), *(x.requires_grad_() for x in (q, k, v))
    )


def main() -> None:
    if serve_peak_request(build):
        return
    rows = []
    for which in PASSES:
        t_var, t_pad = median_ms(build(f"varlen/{which}")), median_ms(build(f"padded/{which}"))
        m_var, m_pad = peak_mib(__file__, f"varlen/{which}"), peak_mib(__file__, f"padded/{which}")
        rows.append([which, t_var, t_pad, t_pad / t_var, m_var, m_pad])
    _, _, _, cu_seqlens = problem()
    sizes = cu_seqlens.diff()
    print(
        f"\n### Varlen vs padded attention, CPU ({THREADS} threads): T={int(cu_seqlens[-1])} tokens in "
        f"{WINDOWS} windows of {int(sizes.min())}–{int(sizes.max())} (mean {sizes.float().mean():.1f}), "
        f"H={HEADS}, D={HEAD_DIM}\n"
    )
    headers = ["pass", "varlen ms", "padded ms", "speed-up ×", "varlen MiB", "padded MiB"]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
