"""Pointer Network (Vinyals, Fortunato, Jaitly 2015): an encoder over the input points, an LSTM decoder
whose additive attention points at the next input (§2.3). Plain ``nn.Module`` s, no Lightning, no I/O.

Key positions: ``0`` is a learned end-of-sequence state, ``1..N`` the points — so the 1-based indices of
the released files are the model's targets as they are.

Both LSTMs read the points through a linear embedding, and an LSTM's first layer only multiplies its
input by ``W_ih``, so the embedding folds into that product exactly:
``W_ih (W_e p + b_e) + b_ih = (W_ih W_e) p + (W_ih b_e + b_ih)``. The LSTMs therefore run on a few
features per position — the point, and flags for "a point" and "the start" — with ``W_ih`` times the
embedding's columns (:func:`lstm_over_features`): the same function of the same parameters (the state
dict is unchanged), with a ``[4·hidden, 4]`` input product in place of a ``[4·hidden, hidden]`` one.
The fold is recomputed from the parameters at every call, so autograd trains them as before.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from core.nn import TransformerEncoder, TransformerEncoderLayer
from core.nn.pointer import PointerAttention
from core.ops.backend import low_precision_dtype

LSTMState = tuple[torch.Tensor, torch.Tensor]  # (h, c), each [layers, B, hidden]
# The decoder's features (x, y, is_point, is_start) before its first step.
START = (0.0, 0.0, 0.0, 1.0)


def lstm_over_features(
    lstm: nn.LSTM,
    features: torch.Tensor | PackedSequence,
    state: LSTMState | None,
    basis: torch.Tensor,
) -> tuple[torch.Tensor | PackedSequence, LSTMState]:
    """Run ``lstm`` on the inputs ``basis @ f`` given only by their features ``f`` (``features``,
    batch-first ``[B, T, F]`` or packed; ``basis`` ``[input_size, F]``): layer 0 reads ``f`` through
    ``W_ih @ basis`` instead of ``x`` through ``W_ih``, the other layers run as they are. Same outputs
    and final ``(h, c)`` as ``lstm(basis @ f, state)`` (``state`` None: zeros), at the cost of an
    F-wide input product.

    Under autocast the LSTM computes in autocast's dtype, cast here: PyTorch then picks its LSTM kernel
    for that dtype, whereas autocast alone casts inside oneDNN's kernel after the choice, which fails
    on CPUs where oneDNN has no bf16 LSTM.
    """
    device, packed = basis.device, isinstance(features, PackedSequence)
    autocast = torch.is_autocast_enabled(device.type)
    directions = 2 if lstm.bidirectional else 1
    with torch.autocast(device.type, enabled=False):
        layers = [list(weights) for weights in lstm.all_weights]
        for weights in layers[:directions]:  # layer 0, each direction: W_ih → W_ih @ basis
            weights[0] = weights[0] @ basis
        dtype = torch.get_autocast_dtype(device.type) if autocast else layers[0][0].dtype
        flat = [weight.to(dtype) for weights in layers for weight in weights]
        data = (features.data if packed else features).to(dtype)
        if state is None:
            batch = (
                int(features.batch_sizes[0]) if packed else data.shape[0 if lstm.batch_first else 1]
            )
            rows = lstm.num_layers * directions
            h = data.new_zeros(rows, batch, lstm.proj_size or lstm.hidden_size)
            state = (h, data.new_zeros(rows, batch, lstm.hidden_size))
        elif packed and features.sorted_indices is not None:  # packed rows are sorted by length
            state = tuple(s.index_select(1, features.sorted_indices) for s in state)
        state = tuple(s.to(dtype) for s in state)
        options = (lstm.bias, lstm.num_layers, lstm.dropout, lstm.training, lstm.bidirectional)
        if not packed:
            output, h, c = torch.lstm(data, state, flat, *options, lstm.batch_first)
            return output, (h, c)
        output, h, c = torch.lstm(data, features.batch_sizes, state, flat, *options)
    final = (h, c)
    if features.unsorted_indices is not None:
        final = tuple(s.index_select(1, features.unsorted_indices) for s in final)
    packed_output = PackedSequence(
        output, features.batch_sizes, features.sorted_indices, features.unsorted_indices
    )
    return packed_output, final


def native_precision(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """Autocast as the caller set it, except where ``device`` has no native arithmetic in autocast's
    dtype (:func:`core.ops.backend.low_precision_dtype`, e.g. a CPU without AVX-512): there the
    network computes in fp32, as fast as without autocast, rather than in emulated bf16."""
    if torch.is_autocast_enabled(device.type) and low_precision_dtype(device) is None:
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


@dataclass
class Encoded:
    """What the decoder needs from the encoder, for B instances (or B·K beams)."""

    keys: torch.Tensor  # W₁ e for [EOS, points] [B, N + 1, attn_dim]
    key_mask: torch.Tensor  # [B, N + 1], True at EOS and the real points
    inputs: torch.Tensor  # decoder features per key position [B, N + 1, 4]: (x, y, 1, 0), EOS 0
    state: LSTMState  # initial decoder state

    def repeat(self, k: int) -> Encoded:
        """Each instance repeated k times (rows b·k … b·k + k − 1), for beam search."""
        return Encoded(
            self.keys.repeat_interleave(k, 0),
            self.key_mask.repeat_interleave(k, 0),
            self.inputs.repeat_interleave(k, 0),
            tuple(s.repeat_interleave(k, 1) for s in self.state),
        )


class LSTMPointEncoder(nn.Module):
    """The paper's encoder: an LSTM over the embedded points; its final state starts the decoder."""

    def __init__(self, hidden_dim: int, num_layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(hidden_dim, hidden_dim, num_layers, batch_first=True)

    def forward(
        self, points: torch.Tensor, point_mask: torch.Tensor, embed: nn.Linear
    ) -> tuple[torch.Tensor, LSTMState]:
        """States e [B, N, hidden] of the points [B, N, 2] embedded by ``embed``, and the final (h, c)
        of every sequence (padding skipped). The embedding is folded into the LSTM: it reads the
        features (x, y, 1) through ``[W_e | b_e]``."""
        features = torch.cat([points, points.new_ones(*points.shape[:-1], 1)], -1)
        basis = torch.cat([embed.weight, embed.bias[:, None]], 1)
        if bool(point_mask.all()):
            return lstm_over_features(self.lstm, features, None, basis)
        lengths = point_mask.sum(-1).cpu()
        packed = pack_padded_sequence(features, lengths, batch_first=True, enforce_sorted=False)
        states, final = lstm_over_features(self.lstm, packed, None, basis)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=points.shape[1])
        return states, final


class TransformerPointEncoder(nn.Module):
    """Variant: a Transformer encoder over the points embedded by ``embed`` [B, N, hidden] (a set —
    no positional encoding); the decoder starts from the masked mean of the states (h) and zeros
    (c)."""

    def __init__(
        self, hidden_dim: int, num_layers: int, num_heads: int, ff_dim: int, dropout: float
    ) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.encoder = TransformerEncoder(
            lambda: TransformerEncoderLayer(
                hidden_dim, num_heads, ff_dim, dropout, norm_first=True
            ),
            num_layers,
        )

    def forward(
        self, points: torch.Tensor, point_mask: torch.Tensor, embed: nn.Linear
    ) -> tuple[torch.Tensor, LSTMState]:
        states = self.encoder(embed(points), mask=point_mask[:, None, None, :])
        weights = point_mask[..., None].to(states.dtype)
        mean = (states * weights).sum(1) / weights.sum(1)
        h = mean[None].expand(self.num_layers, -1, -1).contiguous()
        return states, (h, torch.zeros_like(h))


@dataclass(frozen=True)
class PointerConfig:
    """Hyper-parameters of :class:`PointerNetwork` (paper: §4, one layer, 256/512 units, ±0.08 init).

    Args:
        hidden_dim: LSTM width (256 or 512 in the paper); also the attention width.
        num_layers: encoder and decoder layers (1 in the paper).
        encoder: ``"lstm"`` (the paper) or ``"transformer"``.
        num_heads, ff_dim, dropout: Transformer encoder only.
        init_range: weights uniform in [−r, r] (0.08 in the paper); None keeps PyTorch's defaults.
    """

    hidden_dim: int = 256
    num_layers: int = 1
    encoder: Literal["lstm", "transformer"] = "lstm"
    num_heads: int = 8
    ff_dim: int = 512
    dropout: float = 0.0
    init_range: float | None = 0.08


class PointerNetwork(nn.Module):
    """Ptr-Net: encoder → LSTM decoder → pointer attention ``u_ij = vᵀ tanh(W₁ e_j + W₂ d_i)``.

    Encoder and decoder read the points through one shared linear embedding 2 → hidden (the paper
    feeds raw (x, y); with its ±0.08 initialisation the raw 2-D input barely moves the LSTM and
    training stalls on a plateau, which the embedding removes). The LSTMs apply it folded into their
    first layer (see the module docstring).

    Under autocast (``--trainer.precision bf16-mixed``) the LSTMs and linear layers compute in
    autocast's dtype and the pointer scores in fp32 (``core.ops.pointer_attention``), except on
    devices without native arithmetic in that dtype, where everything stays in fp32
    (:func:`native_precision`).
    """

    def __init__(self, config: PointerConfig) -> None:
        super().__init__()
        self.config = config
        hidden, layers = config.hidden_dim, config.num_layers
        if config.encoder == "lstm":
            self.encoder: nn.Module = LSTMPointEncoder(hidden, layers)
        elif config.encoder == "transformer":
            self.encoder = TransformerPointEncoder(
                hidden, layers, config.num_heads, config.ff_dim, config.dropout
            )
        else:
            raise ValueError(f"encoder must be 'lstm' or 'transformer', got {config.encoder!r}")
        self.embed = nn.Linear(2, hidden)
        self.decoder = nn.LSTM(hidden, hidden, layers, batch_first=True)
        self.pointer = PointerAttention(hidden, hidden, hidden)
        self.end_state = nn.Parameter(torch.zeros(hidden))  # e for the EOS position
        self.start_input = nn.Parameter(torch.zeros(hidden))  # the decoder's first input
        if config.init_range is not None:
            for parameter in self.parameters():
                nn.init.uniform_(parameter, -config.init_range, config.init_range)

    def encode(self, points: torch.Tensor, point_mask: torch.Tensor) -> Encoded:
        """points [B, N, 2], point_mask [B, N] (True = real point) → :class:`Encoded`."""
        with native_precision(points.device):
            states, final = self.encoder(points, point_mask, self.embed)
            batch = points.shape[0]
            states = torch.cat([self.end_state.expand(batch, 1, -1), states], 1)
            ones = point_mask.new_ones(batch, 1)
            is_point = points.new_ones(*points.shape[:-1], 1)
            features = torch.cat([points, is_point, torch.zeros_like(is_point)], -1)
            inputs = F.pad(features, (0, 0, 1, 0))  # the EOS position's features: zeros
            return Encoded(
                self.pointer.project_keys(states), torch.cat([ones, point_mask], 1), inputs, final
            )

    def decoder_inputs(self, encoded: Encoded, previous: torch.Tensor) -> torch.Tensor:
        """Decoder features [B, T, 4] of the previously pointed positions ``previous`` [B, T]
        (negative: the start)."""
        index = previous.clamp(min=0)[..., None].expand(-1, -1, encoded.inputs.shape[-1])
        gathered = encoded.inputs.gather(1, index)
        start = torch.tensor(START, dtype=gathered.dtype, device=gathered.device)
        return torch.where((previous < 0)[..., None], start, gathered)

    def decoder_basis(self) -> torch.Tensor:
        """``[W_e | b_e | start_input]`` [hidden, 4]: the decoder's input is this times its features
        (x, y, is_point, is_start) — the embedded point, zeros at EOS, or the learned start input."""
        return torch.cat(
            [self.embed.weight, self.embed.bias[:, None], self.start_input[:, None]], 1
        )

    def forward(
        self,
        points: torch.Tensor,
        point_mask: torch.Tensor,
        targets: torch.Tensor,
        allowed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher-forced logits [B, T, N + 1] for ``targets`` [B, T] (key positions, padding < 0):
        one LSTM call over the whole target sequence, all pointer scores at once. ``allowed``
        [B, T, N + 1] restricts each step (default: the real points and EOS)."""
        with native_precision(points.device):
            encoded = self.encode(points, point_mask)
            start = targets.new_full((targets.shape[0], 1), -1)
            previous = torch.cat([start, targets[:, :-1]], 1)
            decoder_states, _ = lstm_over_features(
                self.decoder,
                self.decoder_inputs(encoded, previous),
                encoded.state,
                self.decoder_basis(),
            )
            mask = allowed if allowed is not None else encoded.key_mask[:, None, :]
            return self.pointer(decoder_states, encoded.keys, mask)

    def step(
        self, encoded: Encoded, previous: torch.Tensor, state: LSTMState, allowed: torch.Tensor
    ) -> tuple[torch.Tensor, LSTMState]:
        """One decoding step: ``previous`` [B] pointed position (−1 at the start) → logits [B, N + 1]
        restricted to ``allowed`` [B, N + 1], and the new decoder state."""
        with native_precision(previous.device):
            inputs = self.decoder_inputs(encoded, previous[:, None])
            output, state = lstm_over_features(self.decoder, inputs, state, self.decoder_basis())
            return self.pointer(output[:, 0], encoded.keys, allowed), state
