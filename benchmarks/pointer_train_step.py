"""Ptr-Net training step on the CPU: one-call teacher forcing vs the per-step decoder loop of public
PyTorch implementations (an LSTMCell stepped T times, attention each step).

One step = forward + loss + backward + SGD update; hidden 256, batch 128, n = 50 points, 2 threads.
Targets: a convex-hull-like sequence (13 steps: ~11 hull points, the closing point, EOS) and a
tour-like one (52 steps: 50 cities, the return, EOS). Prints a markdown table: median step time,
samples/s, peak memory (growth of the RSS high-water mark while the case runs, each case in a fresh
process) and the speed-up over the loop and over the quoted public numbers.
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from apps.pointer.model import PointerNetwork

HIDDEN, BATCH, POINTS, REPEATS = 256, 128, 50, 5
PUBLIC_SECONDS = {13: 0.27, 52: 0.61}  # a public Ptr-Net implementation, this machine kind


class StepLoopPointerNetwork(PointerNetwork):
    """The baseline: same parameters, but the teacher-forced decoder runs one LSTM step and one
    attention per target position in a Python loop."""

    def forward(
        self, points: torch.Tensor, point_mask: torch.Tensor, targets: torch.Tensor, allowed=None
    ) -> torch.Tensor:
        encoded = self.encode(points, point_mask)
        previous = torch.cat([targets.new_full((targets.shape[0], 1), -1), targets[:, :-1]], 1)
        inputs = self.decoder_inputs(encoded, previous)
        state, logits = encoded.state, []
        for step in range(targets.shape[1]):
            output, state = self.decoder(inputs[:, step : step + 1], state)
            logits.append(self.pointer(output[:, 0], encoded.keys, encoded.key_mask))
        return torch.stack(logits, 1)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_steps(loop: bool, steps: int) -> tuple[float, float]:
    """Median seconds per training step and the peak memory growth (MiB) while running them."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = (StepLoopPointerNetwork if loop else PointerNetwork)(HIDDEN)
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(BATCH, POINTS, 2, generator=generator)
    point_mask = torch.ones(BATCH, POINTS, dtype=torch.bool)
    targets = torch.randint(1, POINTS + 1, (BATCH, steps), generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)

    def train_step() -> None:
        logits = model(points, point_mask, targets)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        optimizer.step()

    baseline = peak_rss_mib()
    train_step()  # warm-up (oneDNN primitives, allocator)
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        train_step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), peak_rss_mib() - baseline


def run_isolated(loop: bool, steps: int) -> tuple[float, float]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(time_steps, (loop, steps))


def main() -> None:
    print(
        f"Ptr-Net training step, CPU, 2 threads, hidden {HIDDEN}, "
        f"batch {BATCH}, n = {POINTS}; median of {REPEATS}\n"
    )
    print(
        "| targets | implementation | step (s) | samples/s | peak memory (MiB) | vs loop | "
        "vs public |"
    )
    print("|---|---|---|---|---|---|---|")
    for steps in (13, 52):
        loop_seconds, loop_rss = run_isolated(True, steps)
        ours_seconds, ours_rss = run_isolated(False, steps)
        public = PUBLIC_SECONDS[steps]
        for name, seconds, rss in (
            ("per-step loop (baseline)", loop_seconds, loop_rss),
            ("one-call teacher forcing", ours_seconds, ours_rss),
        ):
            print(
                f"| {steps} | {name} | {seconds:.3f} | {BATCH / seconds:.0f} | {rss:.0f} | "
                f"{loop_seconds / seconds:.2f}× | {public / seconds:.2f}× |"
            )


if __name__ == "__main__":
    main()
