"""Triton kernels vs their baselines on a CUDA GPU (run by ``nox -s gpu``; prints markdown tables).

* attention, forward + backward, B=2, H=8, L=4096, D=64, fp16 — vs ``F.scaled_dot_product_attention``;
  target: within 1.3× of SDPA.
* relative attention (Music Transformer), forward + backward, B=1, H=8, L=2048, D=64, K = L − 1 —
  vs FlexAttention with a ``score_mod`` adding the precomputed relative scores, and vs the skewing
  reference; targets: at least as fast as Flex, ≥ 5× faster than the reference.
* scattered linear attention, forward, 100k tokens, H=4, D=32, windows of 1–150 tokens — vs the padded
  einsum reference; target: < 1 ms.

Times are ``triton.testing.do_bench`` medians (ms); ratios are baseline / ours (> 1: ours is faster);
peak memory is the extra CUDA memory one call allocates. Without CUDA the script says so and exits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from benchmarks._harness import cuda_peak_mib, markdown_table
from core.ops import attention, relative_attention, scattered_linear_attention
from core.ops.relative_attention import relative_distance_rows

HEADERS = ["case", "ours ms", "baseline", "baseline ms", "speed-up", "ours MiB", "baseline MiB",
           "target"]  # fmt: skip


def fwd_bwd(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> Callable[[], None]:
    """One forward and backward of ``fn`` with a fixed random output gradient."""
    grad = torch.randn_like(fn(*inputs))

    def step() -> None:
        fn(*inputs).backward(grad)

    return step


def measure(
    step: Callable[[], object], inputs: tuple[torch.Tensor, ...] = ()
) -> tuple[float, float]:
    """(median ms, peak MiB) of ``step``; gradients of ``inputs`` are reset between runs."""
    import triton.testing

    step()  # compile / autotune outside the timing
    ms = triton.testing.do_bench(step, grad_to_none=list(inputs), return_mode="median")
    for x in inputs:
        x.grad = None
    return ms, cuda_peak_mib(step)


def row(case: str, ours: tuple, name: str, base: tuple, target: str) -> list[object]:
    return [case, ours[0], name, base[0], base[0] / ours[0], ours[1], base[1], target]


def leaf(*shape: int, dtype: torch.dtype = torch.float16) -> torch.Tensor:
    return torch.randn(*shape, device="cuda", dtype=dtype, requires_grad=True)


def bench_attention() -> list[list[object]]:
    import torch.nn.functional as F

    q, k, v = (leaf(2, 8, 4096, 64) for _ in range(3))
    rows = []
    for causal in (False, True):

        def ours_fn(q, k, v, causal=causal):
            return attention(q, k, v, causal=causal, backend="triton")

        def sdpa_fn(q, k, v, causal=causal):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

        ours = measure(fwd_bwd(ours_fn, q, k, v), (q, k, v))
        sdpa = measure(fwd_bwd(sdpa_fn, q, k, v), (q, k, v))
        case = f"attention fwd+bwd L=4096 D=64 fp16{' causal' if causal else ''}"
        rows.append(row(case, ours, "SDPA", sdpa, "speed-up ≥ 1/1.3 ≈ 0.77"))
    return rows


def flex_relative(causal: bool, length: int) -> Callable[..., torch.Tensor]:
    """Relative attention through FlexAttention: the relative scores ``q Eᵀ`` ``[B, H, L, M]`` come from
    one matmul (as in the reference before skewing) and the ``score_mod`` reads column ``j − i + L − 1``
    (causal: M = L and hidden keys j > i read the distance-0 column, as the masked tile is still scored).
    """
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    compiled = torch.compile(flex_attention, dynamic=False)
    block_mask = None
    if causal:
        block_mask = create_block_mask(
            lambda b, h, q_idx, kv_idx: kv_idx <= q_idx, None, None, length, length, device="cuda"
        )

    def run(q, k, v, rel_emb):
        scale = q.shape[-1] ** -0.5
        rel_scores = torch.einsum(
            "bhld,hmd->bhlm", q, relative_distance_rows(rel_emb, length, causal)
        )

        def score_mod(score, b, h, q_idx, kv_idx):
            key = torch.where(kv_idx > q_idx, q_idx, kv_idx) if causal else kv_idx
            return score + rel_scores[b, h, q_idx, key - q_idx + length - 1] * scale

        return compiled(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale)

    return run


def bench_relative() -> list[list[object]]:
    length, heads = 2048, 8
    q, k, v = (leaf(1, heads, length, 64) for _ in range(3))
    rows = []
    for causal in (False, True):
        rel_emb = leaf(heads, length if causal else 2 * length - 1, 64)
        inputs = (q, k, v, rel_emb)

        def run(backend: str, causal: bool = causal) -> Callable[..., torch.Tensor]:
            return lambda q, k, v, e: relative_attention(q, k, v, e, causal=causal, backend=backend)

        ours = measure(fwd_bwd(run("triton"), *inputs), inputs)
        flex = measure(fwd_bwd(flex_relative(causal, length), *inputs), inputs)
        reference = measure(fwd_bwd(run("reference"), *inputs), inputs)
        case = f"relative fwd+bwd L={length} D=64 fp16 {'causal' if causal else 'bidirectional'}"
        rows.append(row(case, ours, "FlexAttention", flex, "speed-up ≥ 1"))
        rows.append(row(case, ours, "skewing reference", reference, "speed-up ≥ 5"))
    return rows


def bench_scattered_linear() -> list[list[object]]:
    generator = torch.Generator().manual_seed(0)
    sizes = torch.randint(1, 151, (2 * 100_000 // 151,), generator=generator)
    sizes = sizes[: int((sizes.cumsum(0) <= 100_000).sum())]
    cu = torch.cat([torch.zeros(1, dtype=torch.int64), sizes.cumsum(0)]).to("cuda", torch.int32)
    total = int(cu[-1])
    q, k, v = (torch.randn(total, 4, 32, device="cuda", dtype=torch.float16) for _ in range(3))
    rows = []
    with torch.no_grad():
        ours = measure(lambda: scattered_linear_attention(q, k, v, cu, backend="triton"))
        reference = measure(lambda: scattered_linear_attention(q, k, v, cu, backend="reference"))
    case = f"scattered linear fwd T={total} H=4 D=32 fp16, {cu.numel() - 1} windows of 1-150"
    rows.append(row(case, ours, "padded einsum reference", reference, "ours < 1 ms"))
    return rows


def main() -> None:
    if not torch.cuda.is_available():
        print(
            "benchmarks.gpu_kernels: skipped, no CUDA device (run it on a GPU machine: nox -s gpu)"
        )
        return
    torch.manual_seed(0)
    print(f"## Triton kernels on {torch.cuda.get_device_name()}\n")
    rows = bench_attention() + bench_relative() + bench_scattered_linear()
    print(markdown_table(HEADERS, rows))


if __name__ == "__main__":
    main()
