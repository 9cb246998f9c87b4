"""Music Transformer on the CPU: training step, peak memory and generation speed, ours against a public
PyTorch Music Transformer, side by side in one process (2 threads).

Model, both: 6 layers, d_model 512, 8 heads, FFN 1024, dropout 0.1, relative attention unclipped over
the sequence (ours: ``max_relative_position = L − 1``, a table per head, pre-norm; the peer: its
``max_sequence = L``, one table shared by the heads, post-norm, dropout on the attention weights too).
Vocabularies: ours 391 performance events, the peer's 390; the token ids drawn lie in both.

One training step = forward + cross-entropy over every position (padding ignored) + backward + Adam
update (lr 1e-4, betas (0.9, 0.98), eps 1e-9: the peer's constants and our task's) on one random batch
of 2 × L tokens, L = 1024 and 2048, the same batch for both; ours is ``apps.music.MusicTransformer``
with ``F.cross_entropy``, the peer's ``MusicTransformer(..., rpr=True)`` with the
``nn.CrossEntropyLoss(ignore_index=TOKEN_PAD)`` of its ``train.py``. Peak memory of one step (the first:
gradients and Adam's moments are allocated in it, alike for both) is measured for each case alone in
a fresh process (:func:`benchmarks._harness.peak_mib`).

Generation continues a 256-token primer by 256 sampled tokens (batch 1, eval mode, no gradients) at
the same model size (L = 2048 models): ours through :func:`apps.music.sample.generate` with the
key/value cache and without it (``use_cache=False`` re-runs the whole sequence every step), the peer
through its own ``MusicTransformer.generate`` (no cache; it re-runs the sequence every step, and
samples from the softmax without END and PAD). Ours has END's output bias set to −10⁴ so that an
untrained model never stops early either. Reported in tokens/s of the 256 new tokens.

The peer is gwinndr/MusicTransformer-Pytorch at commit 7161590 (``model/music_transformer.py``,
``model/rpr.py``, ``utilities/``, loaded by path from a checkout outside the repository, e.g.
``git -C <mirror> archive 7161590 | tar -x -C /tmp/mt-peer``)::

    python -m benchmarks.music_train_step --peer /tmp/mt-peer --rounds 3

times both, alternating, and ends with one machine-readable line ``ours/peer train_1024=<r>
peak_1024=<r> train_2048=<r> peak_2048=<r> generate_cache=<x> generate_nocache=<x>`` (training and
memory: ours ÷ peer; generation: ours ÷ peer tokens/s). Without ``--peer`` it prints our figures beside
the peer's recorded ones (:data:`RECORDED_PEER`). ``--rounds`` is the number of alternating timed
steps at L = 1024; L = 2048 takes ``max(2, rounds // 2)``; generation with the cache (a few seconds)
takes ``rounds`` too, the two without it (half a minute each) ``max(1, rounds // 3)``, alternating
(each case also runs once untimed first). The default run takes about 3 minutes (7 with ``--peer``).

Shims for running the peer's 2019 code (PyTorch 1.2) on torch ≥ 2, each only a keyword argument:

- ``nn.Transformer.forward`` now passes ``is_causal=`` to its encoder: ``TransformerEncoderRPR.forward``
  is wrapped to drop it (the peer passes its own float causal mask, which is what it uses);
- and ``tgt_is_causal=`` / ``memory_is_causal=`` to its decoder: ``DummyDecoder.forward`` (which
  returns the encoder's output) is wrapped to drop them.

Besides these, the checkout's ``third_party/midi_processor`` is an empty git submodule, which
``utilities/constants.py`` imports only for four vocabulary sizes: where it is missing, a stand-in
module provides them (note-on 128, note-off 128, velocity 32, time-shift 100: the peer's VOCAB_SIZE 390).
The peer's device helper and ``generate`` print progress; that output is swallowed.

The op-level memory of relative attention (the skewing trick against Shaw et al.'s ``[L, L, D]``
tensor, L = 512…2048) is ``benchmarks.relative_attention``'s table.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from apps.music.events import VOCAB_SIZE
from apps.music.model import MusicConfig, MusicTransformer
from apps.music.sample import Sampling, generate
from apps.music.tokens import END, PAD, SPECIALS, START
from benchmarks._harness import (
    THREADS,
    alternating_median_s,
    markdown_table,
    peak_mib,
    peer_arguments,
    watch_load,
)

PEER = "gwinndr/MusicTransformer-Pytorch @7161590"
LAYERS, D_MODEL, HEADS, D_FF, DROPOUT = 6, 512, 8, 1024, 0.1
BATCH, LENGTHS = 2, (1024, 2048)
LR, BETAS, EPS = 1e-4, (0.9, 0.98), 1e-9
PRIMER, NEW_TOKENS, GENERATION_LENGTH = 256, 256, 2048
PEER_VOCAB = 390  # its TOKEN_END 388, TOKEN_PAD 389
MIDI_RANGES = {
    "RANGE_NOTE_ON": 128,
    "RANGE_NOTE_OFF": 128,
    "RANGE_VEL": 32,
    "RANGE_TIME_SHIFT": 100,
}


@dataclass(frozen=True)
class PeerFigures:
    train_s: dict[int, float]  # s/step by L
    peak_mib: dict[int, float]  # by L
    tokens_per_s: float  # its own generate


# The peer measured alongside ours (3 rounds at 1024, 2 at 2048) on this 2-core AMD EPYC (AVX2) VM,
# 2026-11-26, idle (other processes used 0.04 cores); in runs with another process on the machine its
# step took up to 7.1 s and 52 s and its tokens 151 ms. The issue quoted 3.2 s and 16.8 s per step
# and 24 ms a token from another machine of this kind; here, timed on one thread at L = 1024, half
# the peer's step was system time: 1.3 million page faults a step as its [B·H, L, L] tensors are
# allocated afresh (ours: 33 thousand).
RECORDED_PEER = PeerFigures(
    train_s={1024: 6.73, 2048: 30.4},
    peak_mib={1024: 1890.0, 2048: 6350.0},
    tokens_per_s=1 / 0.144,
)


def batch(length: int) -> torch.Tensor:
    """``[B, L + 1]`` random tokens (inputs ``[:, :-1]``, targets ``[:, 1:]``), ids valid in both
    vocabularies and none of them padding or END."""
    gen = torch.Generator().manual_seed(length)
    return torch.randint(SPECIALS, PEER_VOCAB - 2, (BATCH, length + 1), generator=gen)


def our_model(max_len: int) -> MusicTransformer:
    torch.manual_seed(0)
    config = MusicConfig(
        num_layers=LAYERS,
        d_model=D_MODEL,
        n_heads=HEADS,
        d_ff=D_FF,
        dropout=DROPOUT,
        max_relative_position=max_len - 1,
    )
    return MusicTransformer(config, VOCAB_SIZE, max_len)


def train_step(
    model: nn.Module, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], length: int
) -> Callable[[], None]:
    """Forward, loss, backward and Adam update of ``model`` on :func:`batch` (``length``)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, betas=BETAS, eps=EPS)
    tokens = batch(length)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    model.train()

    def step() -> None:
        logits = model(inputs)
        optimizer.zero_grad()
        loss(logits.flatten(0, 1), targets.flatten()).backward()
        optimizer.step()

    return step


def ours_train(length: int) -> Callable[[], None]:
    return train_step(
        our_model(length), functools.partial(F.cross_entropy, ignore_index=PAD), length
    )


def peer_model(checkout: Path, length: int) -> tuple[nn.Module, Any]:
    """The peer's relative MusicTransformer at the benchmark's size (seeded), and its constants."""
    music_transformer, constants = _import_peer(checkout)
    torch.manual_seed(0)
    model = music_transformer.MusicTransformer(
        n_layers=LAYERS,
        num_heads=HEADS,
        d_model=D_MODEL,
        dim_feedforward=D_FF,
        dropout=DROPOUT,
        max_sequence=length,
        rpr=True,
    )
    return model, constants


def peer_train(checkout: Path, length: int) -> Callable[[], None]:
    model, constants = peer_model(checkout, length)
    return train_step(model, nn.CrossEntropyLoss(ignore_index=constants.TOKEN_PAD), length)


def primer() -> torch.Tensor:
    """START and 255 random event tokens (valid in both vocabularies)."""
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(SPECIALS, PEER_VOCAB - 2, (PRIMER,), generator=gen)
    tokens[0] = START
    return tokens


def ours_generate(use_cache: bool) -> Callable[[], None]:
    model = our_model(GENERATION_LENGTH).eval()
    with torch.no_grad():
        model.head.bias[END] = -1e4  # an untrained model must not stop early
    prompt = primer()[None]

    def run() -> None:
        gen = torch.Generator().manual_seed(0)
        out = generate(model, prompt, NEW_TOKENS, Sampling(), gen, use_cache=use_cache)
        assert out.shape[1] == PRIMER + NEW_TOKENS

    return run


def peer_generate(checkout: Path) -> Callable[[], None]:
    model = peer_model(checkout, GENERATION_LENGTH)[0].eval()
    prompt = primer()

    def run() -> None:
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            out = model.generate(prompt, target_seq_length=PRIMER + NEW_TOKENS)
        assert out.shape[1] == PRIMER + NEW_TOKENS

    return run


@functools.cache
def _import_peer(checkout: Path) -> tuple[types.ModuleType, types.ModuleType]:
    """``model.music_transformer`` and ``utilities.constants`` from the checkout, with the shims of
    the module docstring."""
    if not (checkout / "model" / "music_transformer.py").is_file():
        raise SystemExit(f"--peer {checkout}: no model/music_transformer.py (a {PEER} checkout?)")
    sys.path.insert(0, str(checkout))
    try:
        importlib.import_module("third_party.midi_processor.processor")
    except ImportError:
        stand_in = types.ModuleType("third_party.midi_processor.processor")
        vars(stand_in).update(MIDI_RANGES)
        sys.modules["third_party.midi_processor.processor"] = stand_in
    with contextlib.redirect_stdout(io.StringIO()):  # "CUDA devices not detected"
        music_transformer = importlib.import_module("model.music_transformer")
        constants = importlib.import_module("utilities.constants")
    rpr = importlib.import_module("model.rpr")
    rpr.TransformerEncoderRPR.forward = _dropping(rpr.TransformerEncoderRPR.forward, "is_causal")
    music_transformer.DummyDecoder.forward = _dropping(
        music_transformer.DummyDecoder.forward, "tgt_is_causal", "memory_is_causal"
    )
    return music_transformer, constants


def _dropping(forward: Callable[..., torch.Tensor], *names: str) -> Callable[..., torch.Tensor]:
    """``forward`` without the keyword arguments ``names`` (added to the callers in torch ≥ 2)."""

    @functools.wraps(forward)
    def wrapped(*args: object, **kwargs: object) -> torch.Tensor:
        for name in names:
            kwargs.pop(name, None)
        return forward(*args, **kwargs)

    return wrapped


def build(case: str, checkout: Path | None) -> Callable[[], None]:
    """``train/{ours,peer}/<L>`` or ``generate/{cache,nocache,peer}``."""
    kind, who, *length = case.split("/")
    if who == "peer" and checkout is None:
        raise SystemExit("peer cases need --peer PATH")
    if kind == "train":
        return peer_train(checkout, int(length[0])) if who == "peer" else ours_train(int(length[0]))
    return peer_generate(checkout) if who == "peer" else ours_generate(who == "cache")


def main() -> None:
    parsed = peer_arguments(__doc__.split("\n", 1)[0], PEER, 3, build)
    if parsed is None:
        return
    args, extra = parsed
    rounds = {1024: args.rounds, 2048: max(2, args.rounds // 2)}
    generation_rounds = max(1, args.rounds // 3)
    train, peaks, ratios = {}, {}, {}
    with watch_load() as load:
        for length in LENGTHS:
            cases = {"ours": build(f"train/ours/{length}", None)}
            if args.peer:
                cases["peer"] = build(f"train/peer/{length}", args.peer)
            train[length] = alternating_median_s(cases, rounds[length])
            del cases
            peaks[length] = {"ours": peak_mib(__file__, f"train/ours/{length}")}
            if args.peer:
                peaks[length]["peer"] = peak_mib(__file__, f"train/peer/{length}", extra)
        generation = alternating_median_s({"cache": build("generate/cache", None)}, args.rounds)
        cases = {"nocache": build("generate/nocache", None)}
        if args.peer:
            cases["peer"] = build("generate/peer", args.peer)
        generation |= alternating_median_s(cases, generation_rounds)
    source = "measured alongside" if args.peer else "recorded"
    rows = []
    for length in LENGTHS:
        peer_s = train[length]["peer"] if args.peer else RECORDED_PEER.train_s[length]
        peer_peak = peaks[length]["peer"] if args.peer else RECORDED_PEER.peak_mib[length]
        ours_s, ours_peak = train[length]["ours"], peaks[length]["ours"]
        ratios[f"train_{length}"] = ours_s / peer_s
        ratios[f"peak_{length}"] = ours_peak / peer_peak
        rows.append([
            f"{BATCH} × {length}", ours_s, peer_s, ours_s / peer_s,
            ours_peak, peer_peak, ours_peak / peer_peak,
        ])  # fmt: skip
    print(
        f"\n### Music Transformer training step, CPU ({THREADS} threads): {LAYERS} layers, d_model "
        f"{D_MODEL}, {HEADS} heads, FFN {D_FF}, dropout {DROPOUT}, unclipped relative attention; "
        f"peer: {PEER} ({source}); median of {rounds[1024]} rounds at 1024, {rounds[2048]} at 2048\n"
    )
    headers = ["batch", "ours s/step", "peer s/step", "ours ÷ peer"]
    print(markdown_table([*headers, "ours peak MiB", "peer peak MiB", "memory ÷"], rows))
    tokens = {who: NEW_TOKENS / seconds for who, seconds in generation.items()}
    peer_tokens = tokens.pop("peer") if args.peer else RECORDED_PEER.tokens_per_s
    ratios["generate_cache"] = tokens["cache"] / peer_tokens
    ratios["generate_nocache"] = tokens["nocache"] / peer_tokens
    rows = [
        ["ours, KV cache", tokens["cache"], 1e3 / tokens["cache"], ratios["generate_cache"]],
        ["ours, no cache", tokens["nocache"], 1e3 / tokens["nocache"], ratios["generate_nocache"]],
        ["peer generate (no cache)", peer_tokens, 1e3 / peer_tokens, 1.0],
    ]
    print(
        f"\n### Generation: {NEW_TOKENS} tokens after a {PRIMER}-token primer, batch 1, same model "
        f"size; peer {source}; median of {args.rounds} rounds with the cache, {generation_rounds} "
        "without\n"
    )
    print(markdown_table(["who", "tokens/s", "ms/token", "× peer"], rows))
    print("\n" + load[0].report())
    line = " ".join(f"{k}={v:.3f}" for k, v in ratios.items())
    print(("ours/peer " if args.peer else "ours/recorded peer ") + line)


if __name__ == "__main__":
    main()
