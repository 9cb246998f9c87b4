"""Ptr-Net training step on the CPU: one-call teacher forcing (ours) vs the per-step decoder loop of public
PyTorch implementations (one LSTM step and one attention per target position).

One step = forward + loss + backward + gradient clipping + SGD update; hidden 256, batch 128, n = 50
points, 2 threads. Targets: a convex-hull-like sequence (13 steps: ~11 hull points, the closing point,
EOS) and a tour-like one (52 steps: 50 cities, the return, EOS). Goal: half the step time of a public
PyTorch Ptr-Net measured on this machine kind (0.27 s and 0.61 s).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from apps.pointer.model import PointerConfig, PointerNetwork
from benchmarks._harness import THREADS, markdown_table, median_ms, peak_mib, serve_peak_request

HIDDEN, BATCH, POINTS = 256, 128, 50
PUBLIC_SECONDS = {13: 0.27, 52: 0.61}  # a public Ptr-Net implementation, this machine kind
METHODS = ("per-step loop", "one call (ours)")


class StepLoopPointerNetwork(PointerNetwork):
    """The baseline: same parameters, but the teacher-forced decoder runs one LSTM step and one
    attention per target position in a Python loop."""

    def forward(self, points, point_mask, targets, allowed=None) -> torch.Tensor:
        encoded = self.encode(points, point_mask)
        previous = torch.cat([targets.new_full((targets.shape[0], 1), -1), targets[:, :-1]], 1)
        inputs = self.decoder_inputs(encoded, previous)
        state, logits = encoded.state, []
        for step in range(targets.shape[1]):
            output, state = self.decoder(inputs[:, step : step + 1], state)
            logits.append(self.pointer(output[:, 0], encoded.keys, encoded.key_mask))
        return torch.stack(logits, 1)


def build(case: str) -> Callable[[], None]:
    """One training step for ``"<method>/<target steps>"``."""
    method, steps = case.split("/")
    torch.manual_seed(0)
    network = StepLoopPointerNetwork if method == METHODS[0] else PointerNetwork
    model = network(PointerConfig(hidden_dim=HIDDEN))
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(BATCH, POINTS, 2, generator=gen)
    point_mask = torch.ones(BATCH, POINTS, dtype=torch.bool)
    targets = torch.randint(1, POINTS + 1, (BATCH, int(steps)), generator=gen)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)

    def train_step() -> None:
        logits = model(points, point_mask, targets)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        optimizer.step()

    return train_step


def main() -> None:
    if serve_peak_request(build):
        return
    rows = []
    for steps, public in PUBLIC_SECONDS.items():
        seconds = {m: median_ms(build(f"{m}/{steps}"), min_run_time=3.0) / 1e3 for m in METHODS}
        for method in METHODS:
            rows.append([
                steps, method, seconds[method], BATCH / seconds[method],
                peak_mib(__file__, f"{method}/{steps}"),
                seconds[METHODS[0]] / seconds[method], public / seconds[method],
            ])  # fmt: skip
    print(
        f"\n### Ptr-Net training step, CPU ({THREADS} threads), hidden {HIDDEN}, batch {BATCH}, "
        f"n = {POINTS}\n"
    )
    headers = [
        "target steps",
        "decoder",
        "s/step",
        "samples/s",
        "peak MiB",
        "vs loop ×",
        "vs public ×",
    ]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
