"""The embedding folded into the LSTMs is exact, and the network trains under bf16 autocast.

The fold is checked against the network written out without it (embedding, then the LSTM modules as
they are). Mixed precision is checked where bf16 really runs: on a CPU without native bf16 the network
computes in fp32 under autocast, so those tests declare the CPU bf16-capable
(``core.ops.backend._cpu_computes_natively``) and PyTorch's portable bf16 kernels run.
"""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from apps.pointer.__main__ import main
from apps.pointer.data import IGNORE_INDEX, collate
from apps.pointer.generate import generate
from apps.pointer.model import PointerConfig, PointerNetwork, lstm_over_features

from .conftest import CONFIGS
from .test_cli import TINY

# The fold against the network without it: in fp64 the algebra is exact, parameter by parameter; in
# fp32 each parameter's gradient carries rounding noise either way (up to ~1e-4 of its norm for small
# ones, as the unfolded network's own against fp64), so fp32 compares the whole gradient.
FP64_RTOL = 1e-9
FP32_RTOL = 1e-5
# bf16 autocast against fp32, per parameter: ‖g_bf16 − g_fp32‖ / ‖g_fp32‖ (measured ≤ 0.015; with
# the pointer scores in bf16 too, 0.3)
BF16_GRADIENT_RTOL = 0.05
# bf16 autocast against fp32 over a short training run: |loss_bf16 − loss_fp32| per step (measured
# ≤ 0.01 with the losses near 2)
BF16_LOSS_ATOL = 0.03


def unfolded_logits(
    model: PointerNetwork, points: torch.Tensor, point_mask: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Ptr-Net written out without the fold: embed the points, run the LSTM modules on them."""
    embedded = model.embed(points)
    if model.config.encoder == "lstm":
        lengths = point_mask.sum(-1)
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        states, state = model.encoder.lstm(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=points.shape[1])
    else:
        states, state = model.encoder(points, point_mask, model.embed)
    batch = points.shape[0]
    states = torch.cat([model.end_state.expand(batch, 1, -1), states], 1)
    keys = model.pointer.project_keys(states)
    key_inputs = torch.cat([embedded.new_zeros(batch, 1, embedded.shape[-1]), embedded], 1)
    previous = torch.cat([targets.new_full((batch, 1), -1), targets[:, :-1]], 1)
    index = previous.clamp(min=0)[..., None].expand(-1, -1, key_inputs.shape[-1])
    inputs = torch.where((previous < 0)[..., None], model.start_input, key_inputs.gather(1, index))
    decoder_states, _ = model.decoder(inputs, state)
    key_mask = torch.cat([point_mask.new_ones(batch, 1), point_mask], 1)
    return model.pointer(decoder_states, keys, key_mask[:, None, :])


def padded_batch(gen: torch.Generator, batch: int = 6, points: int = 9, steps: int = 7):
    """Random points, rows of different lengths, targets padded with IGNORE_INDEX after EOS."""
    coords = torch.rand(batch, points, 2, generator=gen)
    lengths = torch.randint(3, points + 1, (batch,), generator=gen)
    lengths[0] = points
    point_mask = torch.arange(points) < lengths[:, None]
    targets = torch.full((batch, steps), IGNORE_INDEX)
    for row, length in enumerate(lengths.tolist()):
        count = int(torch.randint(1, steps, (1,), generator=gen))
        targets[row, :count] = torch.randint(1, length + 1, (count,), generator=gen)
        targets[row, count] = 0  # EOS
    return coords, point_mask, targets


def loss_of(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)


def gradients(model: nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_gradients_close(got: dict, want: dict, rtol: float) -> None:
    """Per parameter ‖got − want‖ ≤ rtol·‖want‖, measured against at least 1e-3 of the largest
    gradient's norm (a gradient that is zero in exact arithmetic is rounding noise in both)."""
    assert got.keys() == want.keys()
    floor = 1e-3 * max(g.norm() for g in want.values())
    for name, g in got.items():
        error = (g.to(want[name].dtype) - want[name]).norm() / torch.maximum(
            want[name].norm(), floor
        )
        assert error <= rtol, f"{name}: relative gradient error {error:.2e} > {rtol}"


@pytest.mark.parametrize(
    ("encoder", "layers"), [("lstm", 1), ("lstm", 2), ("transformer", 1), ("transformer", 2)]
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fold_gives_the_unfolded_logits_and_gradients(gen, encoder, layers, dtype):
    config = PointerConfig(
        hidden_dim=24, num_layers=layers, encoder=encoder, num_heads=4, ff_dim=32, init_range=None
    )
    torch.manual_seed(int(torch.randint(1 << 30, (1,), generator=gen)))
    model = PointerNetwork(config).to(dtype)
    points, point_mask, targets = padded_batch(gen)
    points = points.to(dtype)
    assert not point_mask.all()
    folded = model(points, point_mask, targets)
    unfolded = unfolded_logits(model, points, point_mask, targets)
    assert torch.equal(folded.isinf(), unfolded.isinf())
    finite = unfolded.isfinite()
    rtol = FP64_RTOL if dtype == torch.float64 else FP32_RTOL
    assert (folded[finite] - unfolded[finite]).abs().max() <= rtol * unfolded[finite].abs().max()
    got = gradients(model, loss_of(folded, targets))
    want = gradients(model, loss_of(unfolded, targets))
    if dtype == torch.float64:
        assert_gradients_close(got, want, FP64_RTOL)
    else:
        got_all, want_all = (torch.cat([g.flatten() for g in d.values()]) for d in (got, want))
        assert (got_all - want_all).norm() <= FP32_RTOL * want_all.norm()


def test_state_dict_is_the_unfolded_networks():
    """Checkpoints written before the fold load as they are: the same keys and shapes."""
    hidden = 8
    state = PointerNetwork(PointerConfig(hidden_dim=hidden, num_layers=2)).state_dict()
    shapes = {name: tuple(tensor.shape) for name, tensor in state.items()}
    lstm = {
        f"{name}_l{layer}": shape
        for layer in (0, 1)
        for name, shape in [
            ("weight_ih", (4 * hidden, hidden)),
            ("weight_hh", (4 * hidden, hidden)),
            ("bias_ih", (4 * hidden,)),
            ("bias_hh", (4 * hidden,)),
        ]
    }
    assert shapes == {
        **{f"encoder.lstm.{name}": shape for name, shape in lstm.items()},
        "embed.weight": (hidden, 2),
        "embed.bias": (hidden,),
        **{f"decoder.{name}": shape for name, shape in lstm.items()},
        "pointer.v": (hidden,),
        "pointer.W1.weight": (hidden, hidden),
        "pointer.W2.weight": (hidden, hidden),
        "end_state": (hidden,),
        "start_input": (hidden,),
    }


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_lstm_over_features_is_the_lstm_on_basis_times_features(
    gen, layers, bidirectional, packed, with_state
):
    torch.manual_seed(int(torch.randint(1 << 30, (1,), generator=gen)))
    lstm = nn.LSTM(6, 5, layers, batch_first=True, bidirectional=bidirectional)
    basis = torch.randn(6, 3, generator=gen, requires_grad=True)
    features = torch.randn(4, 7, 3, generator=gen)
    directions = 2 if bidirectional else 1
    state = None
    if with_state:
        state = tuple(torch.randn(layers * directions, 4, 5, generator=gen) for _ in range(2))
    inputs = features @ basis.T
    if packed:
        lengths = torch.tensor([7, 3, 5, 1])
        pack = lambda x: pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)  # noqa: E731
        features, inputs = pack(features), pack(inputs)
    out, (h, c) = lstm_over_features(lstm, features, state, basis)
    want_out, (want_h, want_c) = lstm(inputs, state)
    if packed:
        out, want_out = out.data, want_out.data
    for got, want in [(out, want_out), (h, want_h), (c, want_c)]:
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    weights = torch.randn(out.shape, generator=gen)
    parameters = [basis, *lstm.parameters()]
    got = torch.autograd.grad((out * weights).sum() + h.sum(), parameters)
    want = torch.autograd.grad((want_out * weights).sum() + want_h.sum(), parameters)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Declare the CPU bf16-native, so that autocast's bf16 runs (in PyTorch's portable kernels)."""
    monkeypatch.setattr("core.ops.backend._cpu_computes_natively", lambda dtype: True)


def small_model(seed: int, hidden: int = 32) -> PointerNetwork:
    torch.manual_seed(seed)
    return PointerNetwork(PointerConfig(hidden_dim=hidden, init_range=None))


def test_bf16_autocast_computes_the_lstms_in_bf16_and_the_scores_in_fp32(gen, bf16_cpu):
    model = small_model(0)
    points, point_mask, targets = padded_batch(gen)
    with torch.autocast("cpu", torch.bfloat16):
        encoded = model.encode(points, point_mask)
        logits = model(points, point_mask, targets)
    assert encoded.state[0].dtype == torch.bfloat16  # the encoder LSTM's final state
    assert encoded.keys.dtype == torch.bfloat16  # W₁ e, an autocast linear layer
    assert logits.dtype == torch.float32  # core.ops.pointer_attention: fp32 under autocast


def test_without_native_bf16_autocast_leaves_the_network_in_fp32(gen, monkeypatch):
    monkeypatch.setattr("core.ops.backend._cpu_computes_natively", lambda dtype: False)
    model = small_model(1)
    points, point_mask, targets = padded_batch(gen)
    fp32 = model(points, point_mask, targets)
    with torch.autocast("cpu", torch.bfloat16):
        autocast = model(points, point_mask, targets)
    assert torch.equal(autocast, fp32)


def test_bf16_gradients_are_close_to_fp32(gen, bf16_cpu):
    model = small_model(2)
    points, point_mask, targets = padded_batch(gen, batch=16, points=10, steps=8)
    fp32 = gradients(model, loss_of(model(points, point_mask, targets), targets))
    with torch.autocast("cpu", torch.bfloat16):
        loss = loss_of(model(points, point_mask, targets), targets)
    assert_gradients_close(gradients(model, loss), fp32, BF16_GRADIENT_RTOL)


def training_losses(seed: int, autocast: bool, steps: int = 40) -> list[float]:
    """Losses of ``steps`` Adam steps on one fixed set of 24 convex hulls of 5–8 points (padded),
    optionally under bf16 autocast."""
    model = small_model(3)
    points, targets = generate("convex_hull", (5, 8), 24, seed=seed)
    batch = collate([(p, t, None) for p, t in zip(points, targets, strict=True)])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            logits = model(batch.points, batch.point_mask, batch.targets)
            loss = loss_of(logits, batch.targets)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_bf16_training_follows_the_fp32_loss_curve(gen, bf16_cpu):
    seed = int(torch.randint(1 << 30, (1,), generator=gen))
    fp32, bf16 = training_losses(seed, autocast=False), training_losses(seed, autocast=True)
    assert fp32[-1] < 0.8 * fp32[0]  # it learns: the comparison is along a moving curve
    gaps = [abs(a - b) for a, b in zip(bf16, fp32, strict=True)]
    assert max(gaps) <= BF16_LOSS_ATOL, f"largest per-step loss gap {max(gaps):.3f}"


def test_cli_fits_with_bf16_mixed_precision(tmp_path, monkeypatch):
    """``--trainer.precision bf16-mixed`` on this machine's CPU, whatever its bf16 support."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MANYHEADS_RUNS", raising=False)
    monkeypatch.setattr(sys, "argv", ["pointer"])
    configs = ["-c", str(CONFIGS / "default.yaml"), "-c", str(TINY)]
    main(["fit", *configs, "--trainer.precision", "bf16-mixed"])
    assert list((tmp_path / "runs/pointer/tiny").glob("**/last.ckpt"))
