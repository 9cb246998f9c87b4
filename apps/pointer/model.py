"""Pointer Network (Vinyals, Fortunato, Jaitly 2015): an encoder over the input points, an LSTM decoder
whose additive attention points at the next input (§2.3). Plain ``nn.Module`` s, no Lightning, no I/O.

Key positions: ``0`` is a learned end-of-sequence state, ``1..N`` the points — so the 1-based indices of
the released files are the model's targets as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from core.nn import TransformerEncoder, TransformerEncoderLayer
from core.nn.pointer import PointerAttention

LSTMState = tuple[torch.Tensor, torch.Tensor]  # (h, c), each [layers, B, hidden]


@dataclass
class Encoded:
    """What the decoder needs from the encoder, for B instances (or B·K beams)."""

    keys: torch.Tensor  # W₁ e for [EOS, points] [B, N + 1, attn_dim]
    key_mask: torch.Tensor  # [B, N + 1], True at EOS and the real points
    inputs: torch.Tensor  # embedded decoder input per key position [B, N + 1, hidden] (EOS: zeros)
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
    """The paper's encoder: an LSTM over the (embedded) points [B, N, hidden]; its final state starts
    the decoder."""

    def __init__(self, hidden_dim: int, num_layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(hidden_dim, hidden_dim, num_layers, batch_first=True)

    def forward(
        self, points: torch.Tensor, point_mask: torch.Tensor
    ) -> tuple[torch.Tensor, LSTMState]:
        """States e [B, N, hidden] and the final (h, c) of every sequence (padding skipped)."""
        if bool(point_mask.all()):
            return self.lstm(points)
        lengths = point_mask.sum(-1).cpu()
        packed = pack_padded_sequence(points, lengths, batch_first=True, enforce_sorted=False)
        states, final = self.lstm(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=points.shape[1])
        return states, final


class TransformerPointEncoder(nn.Module):
    """Variant: a Transformer encoder over the embedded points [B, N, hidden] (a set — no positional
    encoding); the decoder starts from the masked mean of the states (h) and zeros (c)."""

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
        self, points: torch.Tensor, point_mask: torch.Tensor
    ) -> tuple[torch.Tensor, LSTMState]:
        states = self.encoder(points, mask=point_mask[:, None, None, :])
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
    training stalls on a plateau, which the embedding removes).
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
        embedded = self.embed(points)
        states, final = self.encoder(embedded, point_mask)
        batch = points.shape[0]
        states = torch.cat([self.end_state.expand(batch, 1, -1), states], 1)
        ones = point_mask.new_ones(batch, 1)
        inputs = torch.cat([embedded.new_zeros(batch, 1, embedded.shape[-1]), embedded], 1)
        return Encoded(
            self.pointer.project_keys(states), torch.cat([ones, point_mask], 1), inputs, final
        )

    def decoder_inputs(self, encoded: Encoded, previous: torch.Tensor) -> torch.Tensor:
        """Embedded coordinates [B, T, hidden] of the previously pointed positions ``previous``
        [B, T] (negative: the learned start input)."""
        index = previous.clamp(min=0)[..., None].expand(-1, -1, encoded.inputs.shape[-1])
        gathered = encoded.inputs.gather(1, index)
        return torch.where((previous < 0)[..., None], self.start_input, gathered)

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
        encoded = self.encode(points, point_mask)
        start = targets.new_full((targets.shape[0], 1), -1)
        previous = torch.cat([start, targets[:, :-1]], 1)
        decoder_states, _ = self.decoder(self.decoder_inputs(encoded, previous), encoded.state)
        mask = allowed if allowed is not None else encoded.key_mask[:, None, :]
        return self.pointer(decoder_states, encoded.keys, mask)

    def step(
        self, encoded: Encoded, previous: torch.Tensor, state: LSTMState, allowed: torch.Tensor
    ) -> tuple[torch.Tensor, LSTMState]:
        """One decoding step: ``previous`` [B] pointed position (−1 at the start) → logits [B, N + 1]
        restricted to ``allowed`` [B, N + 1], and the new decoder state."""
        inputs = self.decoder_inputs(encoded, previous[:, None])
        output, state = self.decoder(inputs, state)
        return self.pointer(output[:, 0], encoded.keys, allowed), state
