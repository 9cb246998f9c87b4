"""Ptr-Net training step on the CPU: ours against a public implementation, side by side in one process.

One step = forward + loss + backward + gradient clipping (2.0) + SGD update, hidden 256, batch 128,
n = 50 points, 2 threads, on the same inputs for both networks. Targets: a convex-hull-like sequence
(13 steps: 12 points, then EOS) and a tour-like one (52 steps). Ours runs in fp32 and under bf16
autocast (Lightning's ``bf16-mixed``); the peer in fp32, its own precision (its LSTMs do not run under
CPU bf16 autocast where oneDNN has no bf16 LSTM), so both rows divide by the peer's fp32 step.

The peer is gchaperon/pointer-networks at commit 2d1745d (``ptrnets.PointerNetwork``, Lightning 1.x
code that runs on Lightning 2), checked out outside the repository:

    python -m benchmarks.pointer_train_step --peer /tmp/peer --rounds 30

times both, alternating, and ends with one machine-readable line
``ours/peer fp32 13=<ratio> 52=<ratio> bf16-mixed 13=<ratio> 52=<ratio>``. Without ``--peer`` it
prints our figures beside the peer's recorded ones (:data:`RECORDED_PEER`). The machine's load is
printed around the table; numbers from a loaded machine are marked as not to be recorded.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from apps.pointer.model import PointerConfig, PointerNetwork
from benchmarks._harness import (
    THREADS,
    alternating_median_s,
    markdown_table,
    peak_mib,
    peer_arguments,
    watch_load,
)

HIDDEN, BATCH, POINTS, CLIP, LR = 256, 128, 50, 2.0, 1.0
TARGET_STEPS = (13, 52)
PRECISIONS = ("fp32", "bf16-mixed")
PEER = "gchaperon/pointer-networks @2d1745d"


@dataclass(frozen=True)
class PeerFigure:
    seconds: float  # per training step
    peak_mib: float


# Measured side by side with ours (fp32, 30 alternating rounds) on an idle 2-core machine.
RECORDED_PEER = {13: PeerFigure(0.251, 344.0), 52: PeerFigure(0.682, 1118.0)}


def inputs(steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same batch for both networks: points [B, N, 2] and targets [B, steps] (steps − 1 point
    positions 1..N, then EOS = 0)."""
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(BATCH, POINTS, 2, generator=gen)
    targets = torch.randint(1, POINTS + 1, (BATCH, steps), generator=gen)
    targets[:, -1] = 0
    return points, targets


def ours(steps: int, precision: str) -> Callable[[], None]:
    """One training step of :class:`apps.pointer.PointerNetwork`, under autocast for bf16-mixed (the
    forward and the loss, as Lightning runs them)."""
    torch.manual_seed(0)
    model = PointerNetwork(PointerConfig(hidden_dim=HIDDEN))
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    points, targets = inputs(steps)
    point_mask = torch.ones(BATCH, POINTS, dtype=torch.bool)
    autocast = torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16-mixed")

    def train_step() -> None:
        with autocast:
            logits = model(points, point_mask, targets)
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()

    return train_step


def peer(steps: int, checkout: Path) -> Callable[[], None]:
    """One training step of the peer's ``ptrnets.PointerNetwork`` (its forward and its loss, as in
    its ``training_step`` without the metric logging) on the same inputs, in its packed format:
    encoder input the points, decoder input the target points (it prepends its start symbol),
    targets the positions then 0."""
    model_module = _import_peer(checkout)
    torch.manual_seed(0)
    model = model_module.PointerNetwork(
        input_size=2, hidden_size=HIDDEN, learn_rate=LR, init_range=(-0.08, 0.08)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    points, targets = inputs(steps)
    rows = torch.arange(BATCH)[:, None]

    def pack(sequences: torch.Tensor) -> nn.utils.rnn.PackedSequence:
        return nn.utils.rnn.pack_sequence(list(sequences), enforce_sorted=False)

    encoder_input, answers = pack(points), pack(targets)
    decoder_input = pack(points[rows, targets[:, :-1] - 1])

    def train_step() -> None:
        loss = model._get_loss(model(encoder_input, decoder_input), answers)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()

    return train_step


def _import_peer(checkout: Path) -> types.ModuleType:
    """``ptrnets.model`` from the checkout. Its metrics module imports shapely for polygon metrics
    that a training step never calls; where shapely is not installed, an empty stand-in module lets
    the import through."""
    if not (checkout / "ptrnets" / "model.py").is_file():
        raise SystemExit(f"--peer {checkout}: no ptrnets/model.py there (a {PEER} checkout?)")
    try:
        import shapely.geometry  # noqa: F401
    except ImportError:
        for name in ("shapely", "shapely.geometry"):
            sys.modules[name] = types.ModuleType(name)
    sys.path.insert(0, str(checkout))
    import ptrnets.model

    return ptrnets.model


def build(case: str, checkout: Path | None) -> Callable[[], None]:
    """``"ours/<precision>/<steps>"`` or ``"peer/fp32/<steps>"``."""
    network, precision, steps = case.split("/")
    if network == "peer":
        if checkout is None:
            raise SystemExit("peer cases need --peer PATH")
        return peer(int(steps), checkout)
    return ours(int(steps), precision)


def main() -> None:
    parsed = peer_arguments(__doc__.split("\n", 1)[0], PEER, 30, build)
    if parsed is None:
        return
    args, extra = parsed
    rows, ratios = [], {}
    with watch_load() as load:
        for steps in TARGET_STEPS:
            cases = {p: build(f"ours/{p}/{steps}", None) for p in PRECISIONS}
            if args.peer:
                cases["peer"] = build(f"peer/fp32/{steps}", args.peer)
            seconds = alternating_median_s(cases, args.rounds)
            peer_s = seconds["peer"] if args.peer else RECORDED_PEER[steps].seconds
            peer_peak = (
                peak_mib(__file__, f"peer/fp32/{steps}", extra)
                if args.peer
                else RECORDED_PEER[steps].peak_mib
            )
            for precision in PRECISIONS:
                ratios[precision, steps] = seconds[precision] / peer_s
                ours_peak = peak_mib(__file__, f"ours/{precision}/{steps}")
                rows.append([
                    steps, precision, seconds[precision], peer_s, ratios[precision, steps],
                    ours_peak, peer_peak,
                ])  # fmt: skip
    source = "measured alongside" if args.peer else "recorded, idle machine"
    print(
        f"\n### Ptr-Net training step, CPU ({THREADS} threads), hidden {HIDDEN}, batch {BATCH}, "
        f"n = {POINTS}; peer: {PEER}, fp32 ({source}); median of {args.rounds} rounds\n"
    )
    headers = ["target steps", "ours", "ours s/step", "peer s/step", "ours ÷ peer"]
    print(markdown_table([*headers, "ours peak MiB", "peer peak MiB"], rows))
    print("\n" + load[0].report())
    if args.peer:
        fields = [
            f"{p} " + " ".join(f"{s}={ratios[p, s]:.3f}" for s in TARGET_STEPS) for p in PRECISIONS
        ]
        print("ours/peer " + " ".join(fields))


if __name__ == "__main__":
    main()
