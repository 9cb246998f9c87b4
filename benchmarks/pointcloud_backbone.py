"""DSVT backbone on the CPU: time and peak memory, the set partition's share of it, and set attention
through ``core``'s varlen op against the same sets padded.

Why: DSVT's speed rests on two claims this app must hold on 2 cores: making the sets is cheap next to
the network (ScatterFormer reports DSVT's index generation at 24 % of its GPU runtime; our target is
< 10 %), and attention over unpadded sets beats padding them (the official code pads each set to 36
slots and masks the duplicates; SST pads whole windows).

Inputs: V unique pillars (10k and 30k; ``--quick``: 2k and 5k, 1 round, 1 thread, no peaks) on DSVT's
Waymo grid 468 × 468 × 1, batch 1, drawn like a LiDAR sweep (angle uniform, distance from the centre
Lomax-distributed; duplicates dropped, topped up to exactly V), seeded random features. Backbones:
DSVT-P (d 192, 8 heads, FFN 384, 4 blocks) and our CPU config (d 64, 4 heads, FFN 128, 2 blocks),
windows 12 × 12 × 1, sets of 36. Forward: eval mode, ``no_grad``; forward + backward: train mode,
all-ones output gradient. The partition is timed alone in the same rounds: the four ``partition_sets``
calls of one forward (plain and shifted windows × y and x). Attention: one layer's partition at the
larger V, 8 heads of 24, per-voxel q, k, v ``[V, 8, 24]``, each method gathering its own layout. Peak
memory: one call alone in a fresh process (:func:`benchmarks._harness.peak_mib`). Full run on an
idle 2-core machine: about 3–4 minutes (estimated from single calls, not yet run).
"""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Callable

import torch

from apps.pointcloud.dsvt import DSVT, DSVTConfig
from apps.pointcloud.sets import SetPartition, partition_sets, window_partition
from benchmarks._harness import (
    alternating_median_s,
    backward_step,
    markdown_table,
    peak_mib,
    serve_peak_request,
    watch_load,
)
from core.ops import attention, varlen_attention

GRID = (1, 468, 468)  # (nz, ny, nx): DSVT's Waymo pillars, 0.32 m over 149.76 m
WINDOW, SET_SIZE = (12, 12, 1), 36
SIZES, QUICK_SIZES, ROUNDS = (10_000, 30_000), (2_000, 5_000), 3
LOMAX_SCALE, LOMAX_SHAPE = 25.0, 1.2  # draws: median distance ≈ 20 cells (6.3 m), heavy tail
CONFIGS = {
    "DSVT-P": DSVTConfig(d_model=192, n_heads=8, d_ffn=384, blocks=4),
    "CPU": DSVTConfig(d_model=64, n_heads=4, d_ffn=128, blocks=2),
}
HEADS, HEAD_DIM = 8, 24
METHODS = {"a": "(a) varlen, packed sets", "b": "(b) sets padded to 36", "c": "(c) padded windows"}
PASSES = ("forward", "fwd+bwd")
PUBLISHED = (  # Haiyang-W/DSVT README at 8cfc2a6: "Inference Speed" and "TensorRT Deployment"
    "DSVT's published latency (official README, Waymo, whole detector): DSVT-P 67 ms, DSVT-V 97 ms, "
    "DSVT-P + TensorRT 37 ms (27 Hz); GPU card: not verified (the README names none; the paper's "
    "table could not be read). Backbone alone (no input layer), one RTX 3090: PyTorch 36.0 ms, "
    "TensorRT fp16 13.8 ms (README)."
)


@functools.cache
def lidar_like_coords(num: int) -> torch.Tensor:
    """int64 ``[num, 4]`` (b, z, y, x) of ``num`` distinct pillars, dense near the grid's centre
    (cached: every case at one V sees the same sweep)."""
    gen = torch.Generator().manual_seed(0)
    _, ny, nx = GRID
    taken = torch.empty(0, dtype=torch.long)
    while taken.numel() < num:
        u = torch.rand(2, 2 * num, generator=gen)
        radius = LOMAX_SCALE * ((1 - u[0]).pow(-1 / LOMAX_SHAPE) - 1)
        angle = 2 * math.pi * u[1]
        y = (ny / 2 + radius * angle.sin()).floor()
        x = (nx / 2 + radius * angle.cos()).floor()
        inside = (y >= 0) & (y < ny) & (x >= 0) & (x < nx)
        cells = (y[inside] * nx + x[inside]).long().unique()
        fresh = cells[~torch.isin(cells, taken)]
        keep = torch.randperm(fresh.numel(), generator=gen)[: num - taken.numel()]
        taken = torch.cat([taken, fresh[keep]])
    return torch.stack([taken * 0, taken * 0, taken // nx, taken % nx], 1)  # b = z = 0


def backbone_run(config_name: str, num: int, which: str) -> Callable[[], None]:
    """One forward (eval, no_grad) or forward + backward (train) of the backbone on ``num`` pillars."""
    config = CONFIGS[config_name]
    torch.manual_seed(0)
    model = DSVT(config.d_model, config).train(which != PASSES[0])
    coords = lidar_like_coords(num)
    features = torch.randn(num, config.d_model, generator=torch.Generator().manual_seed(1))
    if which == PASSES[0]:
        return torch.no_grad()(lambda: model(features, coords, GRID))

    def step() -> None:
        out, _, _ = model(features, coords, GRID)
        out.backward(torch.ones_like(out))
        model.zero_grad(set_to_none=True)

    return step


def partitions_run(num: int) -> Callable[[], None]:
    """The four set partitions one forward builds, as ``_StageSets`` builds them."""
    coords = lidar_like_coords(num)

    @torch.no_grad()
    def run() -> None:
        for shifted in (False, True):
            for axis in ("y", "x"):
                partition_sets(coords, GRID, WINDOW, SET_SIZE, shifted, axis)

    return run


def layer_partition(num: int) -> SetPartition:
    """The first layer's sets: plain windows, y axis."""
    return partition_sets(lidar_like_coords(num), GRID, WINDOW, SET_SIZE, shifted=False, axis="y")


def window_groups(num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SST's layout: voxel index ``[W, Lmax]`` per (plain) window, padded to the fullest window's
    count, and which slots are real (bool ``[W, Lmax]``)."""
    window, _ = window_partition(lidar_like_coords(num), GRID, WINDOW)
    order = torch.argsort(window)
    _, group, counts = torch.unique_consecutive(
        window[order], return_inverse=True, return_counts=True
    )
    slot = torch.arange(order.numel()) - (counts.cumsum(0) - counts)[group]
    index = torch.zeros(counts.numel(), int(counts.max()), dtype=torch.long)
    valid = torch.zeros_like(index, dtype=torch.bool)
    index[group, slot], valid[group, slot] = order, True
    return index, valid


def attention_methods(num: int) -> dict[str, Callable[..., torch.Tensor]]:
    """Per method, ``fn(q, k, v)`` on per-voxel ``[V, H, D]`` inputs: (a) ``[T, H, D]``,
    (b) ``[S, H, 36, D]``, (c) ``[W, H, Lmax, D]``."""
    part = layer_partition(num)
    tokens, cu_seqlens = part.tokens, part.cu_seqlens

    def packed(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return varlen_attention(q[tokens], k[tokens], v[tokens], cu_seqlens)

    def padded(index: torch.Tensor, valid: torch.Tensor) -> Callable[..., torch.Tensor]:
        mask = valid[:, None, None, :]  # True = may attend: real (non-duplicate) keys only

        def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            q, k, v = (x[index].transpose(1, 2) for x in (q, k, v))
            return attention(q, k, v, mask=mask)

        return run

    return {"a": packed, "b": padded(part.slots, part.valid), "c": padded(*window_groups(num))}


def attention_inputs(num: int, grad: bool) -> tuple[torch.Tensor, ...]:
    """Per-voxel q, k, v ``[V, H, D]``."""
    gen = torch.Generator().manual_seed(2)
    return tuple(
        torch.randn(num, HEADS, HEAD_DIM, generator=gen).requires_grad_(grad) for _ in range(3)
    )


def build(case: str) -> Callable[[], object]:
    """A closure for ``backbone/<config>/<V>/<pass>``, ``partition/<V>`` or
    ``attention/<a|b|c>/<V>/<pass>``."""
    kind, *rest = case.split("/")
    if kind == "backbone":
        return backbone_run(rest[0], int(rest[1]), rest[2])
    if kind == "partition":
        return partitions_run(int(rest[0]))
    method, num, which = rest[0], int(rest[1]), rest[2]
    fn = attention_methods(num)[method]
    qkv = attention_inputs(num, grad=which != PASSES[0])
    return (lambda: fn(*qkv)) if which == PASSES[0] else backward_step(fn, *qkv)


def check_same_outputs(num: int) -> None:
    """(a) and (b) agree on the real tokens, so the comparison is between equal work."""
    methods, qkv = attention_methods(num), attention_inputs(num, grad=False)
    real = layer_partition(num).valid  # its slots in token order
    dense = methods["b"](*qkv).transpose(1, 2)[real]  # [T, H, D]
    torch.testing.assert_close(methods["a"](*qkv), dense, atol=1e-4, rtol=1e-4)


def backbone_tables(sizes: tuple[int, ...], rounds: int, peaks: bool) -> None:
    cases = [f"backbone/{c}/{n}/{w}" for c in CONFIGS for n in sizes for w in PASSES]
    cases += [f"partition/{n}" for n in sizes]
    ms = {k: s * 1e3 for k, s in alternating_median_s({c: build(c) for c in cases}, rounds).items()}
    rows, shares = [], []
    for name in CONFIGS:
        for n in sizes:
            fwd, train = (ms[f"backbone/{name}/{n}/{w}"] for w in PASSES)
            peak = peak_mib(__file__, f"backbone/{name}/{n}/{PASSES[1]}") if peaks else "—"
            part = ms[f"partition/{n}"]
            rows.append([name, n, fwd, train, peak])
            shares.append([name, n, part, fwd, 100 * part / fwd, train, 100 * part / train])
    print(
        f"\n### DSVT backbone, CPU ({torch.get_num_threads()} threads): 468 × 468 × 1 pillar grid, "
        "batch 1, windows 12 × 12 × 1, sets of 36; DSVT-P = d 192, 8 heads, FFN 384, 4 blocks; "
        f"CPU = d 64, 4 heads, FFN 128, 2 blocks; median of {rounds} alternating rounds\n"
    )
    print(markdown_table(["config", "voxels", "forward ms", "fwd + bwd ms", "fwd + bwd MiB"], rows))
    print(
        "\n### Set partition share: the 4 partitions of one forward (2 window configurations × 2 "
        "axes), timed alone in the same rounds. ScatterFormer (He et al., ECCV 2024) reports DSVT's "
        "index generation at 24 % of its runtime (GPU); our target is < 10 %.\n"
    )
    headers = ["config", "voxels", "partitions ms", "forward ms", "% of forward"]
    print(markdown_table([*headers, "fwd + bwd ms", "% of fwd + bwd"], shares))


def attention_table(num: int, rounds: int, peaks: bool) -> None:
    check_same_outputs(num)
    cases = [f"attention/{m}/{num}/{w}" for w in PASSES for m in METHODS]
    seconds = alternating_median_s({case: build(case) for case in cases}, rounds)
    rows = []
    for case in cases:
        _, method, _, which = case.split("/")
        ratio = seconds[case] / seconds[f"attention/a/{num}/{which}"]
        peak = peak_mib(__file__, case) if peaks else "—"
        rows.append([METHODS[method], which, seconds[case] * 1e3, ratio, peak])
    part, (index, _) = layer_partition(num), window_groups(num)
    print(
        f"\n### Set attention alone, one layer's partition at {num} voxels, H={HEADS}, D={HEAD_DIM}: "
        f"(a) {part.tokens.numel()} tokens in {part.slots.shape[0]} sets; (b) {part.slots.numel()} "
        f"slots, duplicates masked as keys (== (a) on the real tokens, checked to 1e-4); (c) "
        f"{index.shape[0]} windows padded to {index.shape[1]} (SST), key mask\n"
    )
    print(markdown_table(["method", "pass", "ms", "÷ (a)", "peak MiB"], rows))


def main() -> None:
    if serve_peak_request(build):
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: small V, no peaks")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="alternating timed rounds")
    args = parser.parse_args()
    sizes, rounds = (QUICK_SIZES, 1) if args.quick else (SIZES, args.rounds)
    if args.quick:
        torch.set_num_threads(1)  # a smoke test on a shared machine; not numbers to record
    with watch_load() as load:
        backbone_tables(sizes, rounds, peaks=not args.quick)
        attention_table(sizes[-1], rounds, peaks=not args.quick)
    print("\n" + PUBLISHED)
    print("\n" + load[0].report())


if __name__ == "__main__":
    main()
