"""OAT on the CPU: one training step at the paper's size, ours against the official OAT code, side by
side in one process (2 threads).

Model, both: d_model 512 (256 appearance ⊕ 256 position), 4 heads, FFN 512, 4 encoder + 4 decoder
post-norm layers, dropout 0.1, the CNN (conv 5×5/16, max-pool 5, conv 3×3/32, max-pool 3, FC 1440 →
256) on 150 × 93 crops, 2 pointer heads scaled by √512 mixed by a learned read-out; training mode.
Ours is ``apps.scanpath.model.OAT(OATConfig(), grid=(6, 14), crop_size=(150, 93))`` with the
``F.cross_entropy`` of ``apps.scanpath.task``; the peer's ``TransformerModel`` (its Amazon setting:
84 packages on a 6 × 14 shelf, learned position code from ``amazon_learned_random_PE.npy``,
``CA_version 3``, 2 heads, ``CA_dk`` 512, no SPP) and its ``train_batch_teacher_forcing``.

One training step = forward + loss + backward + ``clip_grad_norm_`` 1.0 + Adam update (lr 1e-4: the
peer's ``configure_optimizers`` and Trainer ``gradient_clip_val``; the same for ours) on one batch of
20 displays × 84 objects, one scanpath of 15 fixations on each (the last one the target), the same
random pixels for both. Per display the encoder reads 85 tokens (the 84 objects and the target) and
the decoder 16 (BOS + 15 fixations); the loss covers 16 steps (15 fixations, then EOS). Ours: crops
uint8 ``[20, 85, 3, 150, 93]`` (the target's picture first), cells the 6 × 14 grid, ``scene_index =
arange(20)``, ``inputs [20, 16]``. The peer's batch is what its ``Collator_pure`` hands its step:
``src_pos (85, 20)`` (objects 0…83, then the target's index), ``src_img (20, 85, 150, 93, 3)`` float32
pixels 0…255, ``tgt_pos (17, 20)`` (BOS 86, fixations, EOS 84) and ``tgt_img (20, 17, 150, 93, 3)``
(BOS and EOS the all-ones blank). Peak memory of one step (the first: gradients and Adam's moments
are allocated in it, alike for both) is measured for each case alone in a fresh process
(:func:`benchmarks._harness.peak_mib`); the batch is built before, so neither side counts it.

Where the time goes: the second table times, in the same alternation, the CNN alone, forward and
backward (all-ones output gradient), on the crops each step runs it on — ours the 1,700 crops of the
batch once, the peer the 1,700 encoder crops and again the 320 decoder crops (``tgt_img`` without
its last row) — and the rest of the step (position codes, encoder, decoder, pointer heads, loss,
backward, clipping, Adam) with the CNN's output given: a :class:`GivenOutput` stands in for the CNN
and returns its output on those crops, computed once, as a tensor that takes the gradient. (That
leaves the CNN's 0.37 M parameters out of the rest's clipping and Adam update; the models have
18.3 M.) CNN + rest should come close to the step.

The two steps differ where a reader must know it:

- the peer runs the CNN a second time on the decoder's crops (the fixated objects' pictures,
  copied per step by its collator); ours gathers the decoder's tokens from the encoder's CNN
  features (the same function of the same pixels: ``[BOS appearance ⊕ centre code]`` and the
  objects' tokens) — 1,700 crops through the CNN a step against 2,020;
- the peer builds its position codes in a Python double loop per token and display
  (``calculate3DPositional_learned``: 2,020 small ``torch.cat`` calls a step); ours indexes a table;
- the peer's output has 86 classes (84 objects, EOS = the score against the target token's encoder
  state, PAD = the zero placeholder logit, which its loss never targets but whose softmax includes
  it); ours 85 (EOS = the score against the target token, 84 objects), without the placeholder;
- the peer feeds raw 0…255 float pixels to its CNN; ours uint8, scaled to −0.5…0.5 inside;
- the peer's Trainer runs with ``deterministic=True`` (``torch.use_deterministic_algorithms``);
  here neither step does, as that global flag would reach ours too;
- the peer's model holds two modules its step never uses (``generator`` 512 → 86 and
  ``LinearEmbedding`` 3 → 256); they get no gradient and Adam skips them. Ours has two 256-d learned
  vectors the peer has not (the target flag and BOS's appearance).

The peer is HKUST-NISL/oat_eccv24 at commit 0c48c3e (``src/model/transformerLightning.py`` and the
``models.py`` and ``positionalEncoding.py`` it imports, loaded by path from a checkout outside the
repository, e.g. ``git -C <mirror> archive 0c48c3e | tar -x -C /tmp/oat-peer``)::

    python -m benchmarks.scanpath_train_step --peer /tmp/oat-peer --rounds 5

times both, alternating, and ends with one machine-readable line ``ours/peer train=<r> peak=<r>
cnn=<r> rest=<r>`` (ours ÷ peer: seconds a step, MiB, seconds of the CNN alone and of the rest).
Without ``--peer`` it prints our figures beside the peer's recorded ones (:data:`RECORDED_PEER`; no
time was recorded for its parts, so the line has ``train`` and ``peak`` only). ``--rounds`` is the
number of alternating timed calls per case (each case also runs once untimed first). On an idle
2-core machine the default 5 rounds take about 1 minute, 3½ with ``--peer`` (one round of all six
cases about 27 s, and a fresh process for each peak).

Shims for running the peer's code, which is a Lightning module whose file imports more than a step
needs: its ``__init__`` opens a ``tensorboardX.SummaryWriter`` (a log directory) that only its
gradient-logging helper uses, and ``evaluation/saliency_metric.py`` imports ``skimage`` (``resize``,
``img_as_float``, ``exposure``) for validation metrics. Where these are not installed, stand-in
modules provide the names: a ``SummaryWriter`` that does nothing (so no log directory is written), and
``skimage`` names that raise if called. The checkout's ``src`` goes at the front of ``sys.path``, as its
modules import each other as ``model.*``, ``evaluation.*`` and ``dataBuilders.*``. The step itself is
the peer's own ``train_batch_teacher_forcing`` (with its ``processData3d``, ``generate3DInput``,
``create_mask`` and ``CrossEntropyLoss(ignore_index=PAD)``), its ``configure_optimizers``' Adam, and
what its Lightning Trainer does around them: ``zero_grad``, ``backward``,
``clip_grad_norm_(…, 1.0)`` over the optimizer's parameters, ``step``; the ``self.log`` call of its
``training_step`` is left out.
"""

from __future__ import annotations

import functools
import importlib
import math
import sys
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from apps.scanpath.model import OAT, OATConfig
from benchmarks._harness import (
    THREADS,
    alternating_median_s,
    markdown_table,
    peak_mib,
    peer_arguments,
    watch_load,
)

PEER = "HKUST-NISL/oat_eccv24 @0c48c3e"
SCENES, OBJECTS, FIXATIONS = 20, 84, 15  # the peer's batch_size, Amazon's package_size
GRID, CROP = (6, 14), (150, 93)  # Amazon's shelf_row × shelf_col; the crops' (h, w)
LR, CLIP = 1e-4, 1.0
BLANKS = 4  # all-ones pictures the peer's collator appends (EOS, PAD, BOS index them)


@dataclass(frozen=True)
class PeerFigure:
    seconds: float  # per training step
    peak_mib: float


# As quoted by the issue: the official implementation on this machine kind (2-core CPU VM) with 2
# threads, 4.4 s a step and 5.5 GB, read as 10⁹ bytes (the stricter reading for the goal of half).
RECORDED_SOURCE = "recorded: as quoted by the issue"
RECORDED_PEER = PeerFigure(seconds=4.4, peak_mib=5.5e9 / 2**20)


@dataclass(frozen=True)
class Batch:
    """One batch of random displays, layout-neutral: ``pixels [S, N, h, w, 3]`` uint8 (the objects'
    crops, as the peer's preprocessing stores them), ``target [S]`` (the searched object) and
    ``fixations [S, 15]`` (object indices, the last one the target)."""

    pixels: torch.Tensor
    target: torch.Tensor
    fixations: torch.Tensor


def make_batch(seed: int = 0) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (SCENES, OBJECTS, *CROP, 3), generator=gen, dtype=torch.uint8)
    target = torch.randint(0, OBJECTS, (SCENES,), generator=gen)
    fixations = torch.randint(0, OBJECTS, (SCENES, FIXATIONS), generator=gen)
    fixations[:, -1] = target
    return Batch(pixels, target, fixations)


@dataclass
class Recorded:
    """What a case's last step saw (for the comparison): its loss, its logits' shape, and the
    model (whose parameters with a gradient are those a step trains)."""

    loss: float = math.nan
    logits: tuple[int, ...] = ()
    model: nn.Module | None = None


def our_model() -> OAT:
    torch.manual_seed(0)
    return OAT(OATConfig(), grid=GRID, crop_size=CROP).train()


def our_inputs(
    batch: Batch,
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """``(crops, cells, object_mask, target_objects, scene_index, inputs)`` and ``targets`` for
    :class:`OAT`."""
    rows = torch.arange(SCENES)
    pictures = torch.cat([batch.pixels[rows, batch.target][:, None], batch.pixels], dim=1)
    crops = pictures.permute(0, 1, 4, 2, 3).contiguous()  # [S, 1 + N, 3, h, w]
    j = torch.arange(OBJECTS)
    cells = torch.stack([j // GRID[1], j % GRID[1]], dim=-1).expand(SCENES, -1, -1).contiguous()
    object_mask = torch.ones(SCENES, OBJECTS, dtype=torch.bool)
    eos = torch.zeros(SCENES, 1, dtype=torch.long)  # BOS in the inputs, EOS in the targets
    inputs = torch.cat([eos, batch.fixations + 1], dim=1)
    targets = torch.cat([batch.fixations + 1, eos], dim=1)
    return (crops, cells, object_mask, batch.target, rows, inputs), targets


class GivenOutput(nn.Module):
    """Stands in for a CNN: returns, for an input of a shape seen before, the CNN's output on it,
    computed once (a leaf that takes the gradient the CNN's output would)."""

    def __init__(self, cnn: nn.Module, *inputs: tuple[Any, ...]) -> None:
        super().__init__()
        with torch.no_grad():
            self.outputs = {tuple(x[0].shape): cnn(*x).requires_grad_() for x in inputs}

    def forward(self, x: torch.Tensor, *args: object) -> torch.Tensor:
        return self.outputs[tuple(x.shape)]


def ours_train(recorded: Recorded | None = None, cnn_given: bool = False) -> Callable[[], None]:
    """Our training step (see the module docstring); with ``cnn_given``, the step without the CNN:
    its output is a :class:`GivenOutput`."""
    model = our_model()
    inputs, targets = our_inputs(make_batch())
    if cnn_given:
        model.cnn = GivenOutput(model.cnn, (inputs[0].flatten(0, 1),))
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    if recorded is not None:
        recorded.model = model

    def step() -> None:
        logits = model(*inputs)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        if recorded is not None:
            recorded.loss, recorded.logits = loss.item(), tuple(logits.shape)

    return step


def ours_cnn() -> Callable[[], None]:
    """Our CNN alone, forward and backward, on the batch's 20 × 85 crops."""
    model = our_model()
    (crops, *_), _ = our_inputs(make_batch())
    crops = crops.flatten(0, 1)

    def run() -> None:
        out = model.cnn(crops)
        out.backward(torch.ones_like(out))
        model.zero_grad(set_to_none=True)

    return run


def peer_args(checkout: Path) -> types.SimpleNamespace:
    """The fields of ``run.py``'s arguments that ``TransformerModel`` reads, at their defaults for
    Amazon (``package_size`` 84, ``shelf_row`` 6, ``shelf_col`` 14)."""
    return types.SimpleNamespace(
        package_size=OBJECTS,
        shelf_row=GRID[0],
        shelf_col=GRID[1],
        functionChoice="learned",
        alpha=0.9,
        changeX="None",
        CA_version=3,
        CA_head=2,
        CA_dk=512,
        spp=0,
        PE_matrix=str(checkout / "src" / "model" / "amazon_learned_random_PE.npy"),
        log_name="benchmark",
        learning_rate=LR,
        scheduler_lambda1=1,
        scheduler_lambda2=1.0,
    )


def peer_module(checkout: Path) -> nn.Module:
    """The peer's ``TransformerModel`` (it seeds itself with 0 and Xavier-initialises its model)."""
    lightning = _import_peer(checkout)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nn.TransformerEncoder's nested-tensor notice
        return lightning.TransformerModel(peer_args(checkout), FIXATIONS + 2).train()


def peer_batch(batch: Batch) -> tuple[torch.Tensor, ...]:
    """``(src_pos, src_img, tgt_pos, tgt_img)`` as the peer's ``Collator_pure`` builds them."""
    pad, bos, eos = OBJECTS + 1, OBJECTS + 2, OBJECTS
    blank = torch.ones(BLANKS, *CROP, 3)
    src_pos = torch.cat([torch.arange(OBJECTS).expand(SCENES, -1), batch.target[:, None]], dim=1)
    ends = torch.full((SCENES, 1), bos), torch.full((SCENES, 1), eos)
    tgt_pos = torch.cat([ends[0], batch.fixations, ends[1]], dim=1)
    assert pad not in tgt_pos
    src_img, tgt_img = [], []
    for i in range(SCENES):
        images = torch.cat([batch.pixels[i].float(), blank])  # [N + 4, h, w, 3]
        src_img.append(images[src_pos[i]])
        tgt_img.append(images[tgt_pos[i]])
    return (
        src_pos.T.contiguous(),
        torch.stack(src_img),
        tgt_pos.T.contiguous(),
        torch.stack(tgt_img),
    )


def peer_train(
    checkout: Path, recorded: Recorded | None = None, cnn_given: bool = False
) -> Callable[[], None]:
    """The peer's training step (see the module docstring); with ``cnn_given``, the step without the
    CNN: its outputs (on the encoder's and on the decoder's crops) are a :class:`GivenOutput`."""
    module = peer_module(checkout)
    batch = peer_batch(make_batch())
    if cnn_given:
        cnn, src_img, tgt_img = module.model.cnn_embedding, batch[1], batch[3][:, :-1]
        module.model.cnn_embedding = GivenOutput(cnn, (src_img, True), (tgt_img, True))
    optimizers, _schedulers = module.configure_optimizers()
    optimizer = optimizers[0]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if recorded is not None:
        recorded.model = module
        module.model.register_forward_hook(
            lambda _m, _i, out: setattr(recorded, "logits", tuple(out.shape))
        )

    def step() -> None:
        loss = module.train_batch_teacher_forcing(batch)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, CLIP)
        optimizer.step()
        if recorded is not None:
            recorded.loss = loss.item()

    return step


def peer_cnn(checkout: Path) -> Callable[[], None]:
    """The peer's CNN alone, forward and backward, as its forward runs it: on the encoder's 20 × 85
    crops and on the decoder's 20 × 16 (``tgt_img[:, :-1]``, as its ``processData3d`` slices it)."""
    module = peer_module(checkout)
    _, src_img, _, tgt_img = peer_batch(make_batch())
    tgt_img = tgt_img[:, :-1]
    cnn = module.model.cnn_embedding

    def run() -> None:
        outs = [cnn(src_img, True), cnn(tgt_img, True)]
        torch.autograd.backward(outs, [torch.ones_like(out) for out in outs])
        cnn.zero_grad(set_to_none=True)

    return run


@functools.cache
def _import_peer(checkout: Path) -> types.ModuleType:
    """``model.transformerLightning`` from ``checkout/src``, with the stand-ins of the module
    docstring where ``tensorboardX`` or ``skimage`` are missing."""
    source = checkout / "src"
    if not (source / "model" / "transformerLightning.py").is_file():
        raise SystemExit(
            f"--peer {checkout}: no src/model/transformerLightning.py (a {PEER} checkout?)"
        )
    for name, stand_in in (
        ("tensorboardX", _tensorboardx_stand_in),
        ("skimage", _skimage_stand_in),
    ):
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules.update(stand_in())
    sys.path.insert(0, str(source))
    # the masks it passes (bool src_mask, float causal tgt_mask beside bool padding masks) make
    # torch warn at each call; the computation is what the peer's torch did
    warnings.filterwarnings("ignore", message=".*mismatched key_padding_mask.*")
    warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")
    return importlib.import_module("model.transformerLightning")


def _tensorboardx_stand_in() -> dict[str, types.ModuleType]:
    """``tensorboardX`` with a ``SummaryWriter`` that writes nothing."""

    class SummaryWriter:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def add_histogram(self, *args: object, **kwargs: object) -> None:
            pass

    module = types.ModuleType("tensorboardX")
    module.SummaryWriter = SummaryWriter  # type: ignore[attr-defined]
    return {"tensorboardX": module}


def _skimage_stand_in() -> dict[str, types.ModuleType]:
    """``skimage`` with ``transform.resize``, ``img_as_float`` and ``exposure``, each raising if
    used (only the peer's validation metrics use them)."""

    def missing(name: str) -> Callable[..., Any]:
        def call(*args: object, **kwargs: object) -> Any:
            raise RuntimeError(
                f"skimage.{name} called: install scikit-image for the peer's metrics"
            )

        return call

    root, transform = types.ModuleType("skimage"), types.ModuleType("skimage.transform")
    exposure = types.ModuleType("skimage.exposure")
    transform.resize = missing("transform.resize")  # type: ignore[attr-defined]
    root.img_as_float = missing("img_as_float")  # type: ignore[attr-defined]
    root.transform, root.exposure = transform, exposure  # type: ignore[attr-defined]
    return {"skimage": root, "skimage.transform": transform, "skimage.exposure": exposure}


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """All parameters, and those that got a gradient in the last step."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.grad is not None)


def build(case: str, checkout: Path | None) -> Callable[[], None]:
    """``{train,cnn,rest}/{ours,peer}``: the step, the CNN alone, the step without the CNN."""
    what, who = case.split("/")
    if who == "peer":
        if checkout is None:
            raise SystemExit("peer cases need --peer PATH")
        if what == "cnn":
            return peer_cnn(checkout)
        return peer_train(checkout, cnn_given=what == "rest")
    return ours_cnn() if what == "cnn" else ours_train(cnn_given=what == "rest")


def main() -> None:
    parsed = peer_arguments(__doc__.split("\n", 1)[0], PEER, 5, build)
    if parsed is None:
        return
    args, extra = parsed
    who = ["ours", "peer"] if args.peer else ["ours"]
    recorded = {w: Recorded() for w in who}
    with watch_load() as load:
        cases: dict[str, Callable[[], None]] = {"train/ours": ours_train(recorded["ours"])}
        if args.peer:
            cases["train/peer"] = peer_train(args.peer, recorded["peer"])
        for what in ("cnn", "rest"):
            cases |= {f"{what}/{w}": build(f"{what}/{w}", args.peer) for w in who}
        seconds = alternating_median_s(cases, args.rounds)
        del cases
        peaks = {w: peak_mib(__file__, f"train/{w}", extra) for w in who}
    source = "measured alongside" if args.peer else RECORDED_SOURCE
    ours_s, ours_peak = seconds["train/ours"], peaks["ours"]
    peer_s = seconds["train/peer"] if args.peer else RECORDED_PEER.seconds
    peer_peak = peaks["peer"] if args.peer else RECORDED_PEER.peak_mib
    ratios = {"train": ours_s / peer_s, "peak": ours_peak / peer_peak}
    print(
        f"\n### OAT training step, CPU ({THREADS} threads): d 512, 4 heads, FFN 512, 4 + 4 layers, "
        f"CNN on {CROP[0]} × {CROP[1]} crops; {SCENES} displays × {OBJECTS} objects (+ target), "
        f"{FIXATIONS} fixations; Adam, clip 1.0; peer: {PEER} ({source}); median of "
        f"{args.rounds} rounds\n"
    )
    headers = ["case", "ours s/step", "peer s/step", "ours ÷ peer", "ours peak MiB"]
    headers += ["peer peak MiB", "memory ÷"]
    row = [f"{SCENES} × {OBJECTS}, {FIXATIONS} fix.", ours_s, peer_s, ratios["train"]]
    print(markdown_table(headers, [[*row, ours_peak, peer_peak, ratios["peak"]]]))
    crops = {"ours": SCENES * (OBJECTS + 1), "peer": SCENES * (OBJECTS + 1 + FIXATIONS + 1)}
    rows = []
    for w in who:
        cnn, rest = seconds[f"cnn/{w}"], seconds[f"rest/{w}"]
        rows.append([w, seconds[f"train/{w}"], cnn, rest, cnn + rest, crops[w]])
    if args.peer:
        ratios["cnn"] = seconds["cnn/ours"] / seconds["cnn/peer"]
        ratios["rest"] = seconds["rest/ours"] / seconds["rest/peer"]
    print(
        "\n### Where the step's time goes: the CNN alone (forward + backward) and the rest of the "
        "step (its output given); same rounds\n"
    )
    headers = ["who", "step s", "CNN fwd+bwd s", "rest s", "CNN + rest s", "crops through the CNN"]
    print(markdown_table(headers, rows))
    print(
        f"\nsame work, both: per display {OBJECTS + 1} encoder tokens, per scanpath "
        f"{FIXATIONS + 1} decoder steps and {FIXATIONS + 1} loss terms"
    )
    for w in who:
        total, trained = parameter_counts(recorded[w].model)
        print(
            f"{w}: {total:,} parameters, {trained:,} trained by a step; logits "
            f"{list(recorded[w].logits)}; loss at the last timed step {recorded[w].loss:.4f}"
        )
    print("\n" + load[0].report())
    line = " ".join(f"{k}={v:.3f}" for k, v in ratios.items() if not math.isnan(v))
    print(("ours/peer " if args.peer else "ours/recorded peer ") + line)


if __name__ == "__main__":
    main()
