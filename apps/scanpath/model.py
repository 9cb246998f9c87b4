"""OAT: the object-level attention transformer (Fang et al., ECCV 2024, §3).

An encoder reads the display as a set of object tokens, each its appearance (a small CNN over the
object's crop, §3.1) concatenated with its object positional code (§3.2), plus a target token (the
CNN over the target's picture). A decoder reads the scanpath so far — BOS (the fixation cross at the
display centre), then the fixated objects' tokens plus 1-D sinusoidal positions — and attends to the
encoder. The output at each step is a pointer distribution over the encoder's tokens (§3.3): per
pointer head, the scaled dot product of the projected encoder and decoder states, mixed across heads
by a learned read-out; pointing at the target token means EOS (stop).

Shapes: S scenes (displays) of up to N objects, P scanpaths on them (``scene_index [P]`` says which
display each one searches), T decoder steps. Pointer index 0 (the target token) is EOS, ``j + 1`` is
object ``j``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from apps.scanpath.cnn import CropCNN
from apps.scanpath.positional import gaussian_position_codes
from apps.scanpath.scenes import cell_index
from core.nn import (
    Dropout,
    SinusoidalPositionalEncoding,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

EOS = 0


@dataclass(frozen=True)
class OATConfig:
    """OAT's hyper-parameters (paper §4.2 and the official code's defaults).

    Attributes:
        d_model: token width (512): half appearance, half position code.
        n_heads, d_ff: attention heads (4) and feed-forward width (512).
        encoder_layers, decoder_layers: 4 and 4.
        dropout: 0.1.
        pointer_heads, pointer_dim: the output's dot-product heads (2) and their scale √d (512).
        sigma: the positional code's Gaussian width in grid cells (2).
        target_position: the target token's position half is the target object's cell code plus a
            learned target flag, and the decoder's token of the target object carries the flag too
            (the official code's 3-part code: row, column, is-target). False: the target token's
            position half is the flag alone, so the network is not told where the target lies and
            must find it by appearance.
    """

    d_model: int = 512
    n_heads: int = 4
    d_ff: int = 512
    encoder_layers: int = 4
    decoder_layers: int = 4
    dropout: float = 0.1
    pointer_heads: int = 2
    pointer_dim: int = 512
    sigma: float = 2.0
    target_position: bool = True


class PointerHeads(nn.Module):
    """The output (§3.3): per head ``(W_e m)·(W_d h) / √d`` over the encoder's tokens, mixed across
    heads by a linear read-out. The target token's score is EOS (as in the official code, whose EOS
    index is the target token's): the searcher stops by attending to what it was looking for. Keys
    ``[S, h, 1 + N, d]`` (:meth:`project_keys`, once per display) × states ``[P, T, d]`` →
    ``[P, T, 1 + N]``."""

    def __init__(self, d_model: int, heads: int, scale_dim: int) -> None:
        super().__init__()
        self.queries = nn.Linear(d_model, heads * d_model)
        self.keys = nn.Linear(d_model, heads * d_model)
        self.readout = nn.Linear(heads, 1)
        self.heads, self.scale = heads, scale_dim**-0.5

    def project_keys(self, memory: torch.Tensor) -> torch.Tensor:
        """``[S, 1 + N, d]`` encoder states → ``[S, h, 1 + N, d]``."""
        S, M, d = memory.shape
        return self.keys(memory).view(S, M, self.heads, d).transpose(1, 2)

    def forward(self, states: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        P, T, d = states.shape
        q = self.queries(states).view(P, T, self.heads, d).transpose(1, 2)  # [P, h, T, d]
        scores = torch.matmul(q, keys.transpose(-1, -2)) * self.scale  # [P, h, T, 1 + N]
        return self.readout(scores.permute(0, 2, 3, 1)).squeeze(-1)


@dataclass
class Encoded:
    """The encoder's output for S displays: ``memory [S, 1 + N, d]`` (target token first),
    ``memory_mask [S, 1 + N]`` (True = real), ``tokens [S, 1 + N, d]``, the decoder's input
    vocabulary per display (BOS first, then the objects' appearance ⊕ position), and the pointer
    heads' keys ``[S, h, 1 + N, d]``."""

    memory: torch.Tensor
    memory_mask: torch.Tensor
    tokens: torch.Tensor
    pointer_keys: torch.Tensor


class OAT(nn.Module):
    """The network. ``grid`` = the positional code's (rows, cols); ``crop_size`` = (h, w) of the
    crops the CNN reads (150 × 93 in the paper)."""

    def __init__(
        self, config: OATConfig, grid: tuple[int, int], crop_size: tuple[int, int]
    ) -> None:
        super().__init__()
        d, half = config.d_model, config.d_model // 2
        if d % 2:
            raise ValueError(f"d_model must be even (appearance ⊕ position halves), got {d}")
        self.config, self.grid = config, tuple(grid)
        self.cnn = CropCNN(tuple(crop_size), half)
        self.register_buffer(
            "position_codes",
            gaussian_position_codes(self.grid, half, config.sigma),
            persistent=False,
        )
        self.target_flag = nn.Parameter(torch.randn(half) / half**0.5)
        self.bos_appearance = nn.Parameter(torch.randn(half) / half**0.5)
        self.step_positions = SinusoidalPositionalEncoding(d)
        self.dropout = Dropout(config.dropout)
        layer = dict(d_model=d, n_heads=config.n_heads, d_ff=config.d_ff, dropout=config.dropout)
        self.encoder = TransformerEncoder(
            partial(TransformerEncoderLayer, **layer), config.encoder_layers
        )
        self.decoder = TransformerDecoder(
            partial(TransformerDecoderLayer, **layer), config.decoder_layers
        )
        self.pointer = PointerHeads(d, config.pointer_heads, config.pointer_dim)

    def cell_codes(self, cells: torch.Tensor) -> torch.Tensor:
        """``[..., 2]`` (row, col) → ``[..., d/2]`` position codes."""
        return self.position_codes[cell_index(cells, self.grid)]

    def encode(
        self,
        crops: torch.Tensor,
        cells: torch.Tensor,
        object_mask: torch.Tensor,
        targets: torch.Tensor,
    ) -> Encoded:
        """``crops [S, 1 + N, 3, h, w]`` uint8 (the target's picture first), ``cells [S, N, 2]``,
        ``object_mask [S, N]``, ``targets [S]`` (the target object's index) → :class:`Encoded`."""
        S = crops.shape[0]
        memory_mask = nn.functional.pad(object_mask, (1, 0), value=True)
        features = self.cnn(crops[memory_mask])  # real crops only, not the padding
        appearance = features.new_zeros(*memory_mask.shape, features.shape[-1])
        appearance = appearance.masked_scatter(memory_mask[..., None], features)
        positions = self.cell_codes(cells)  # [S, N, d/2]
        fixated_positions, target_position = positions, self.target_flag.expand(S, -1)
        if self.config.target_position:
            rows = torch.arange(S, device=cells.device)
            target_position = positions[rows, targets] + self.target_flag
            flagged = torch.zeros_like(object_mask)
            flagged[rows, targets] = True
            fixated_positions = positions + flagged[..., None] * self.target_flag
        objects = torch.cat([appearance[:, 1:], positions], dim=-1)
        target = torch.cat([appearance[:, 0], target_position], dim=-1)
        display = torch.cat([target.unsqueeze(1), objects], dim=1)
        memory = self.encoder(self.dropout(display), mask=memory_mask[:, None, None, :])
        centre = torch.tensor([self.grid[0] // 2, self.grid[1] // 2], device=cells.device)
        bos = torch.cat([self.bos_appearance, self.cell_codes(centre)]).expand(S, 1, -1)
        fixated = torch.cat([appearance[:, 1:], fixated_positions], dim=-1)  # the target flagged
        tokens = torch.cat([bos, fixated], dim=1)
        return Encoded(memory, memory_mask, tokens, self.pointer.project_keys(memory))

    def decode(
        self,
        encoded: Encoded,
        scene_index: torch.Tensor,
        inputs: torch.Tensor,
        caches: list | None = None,
        offset: int = 0,
    ) -> torch.Tensor:
        """Pointer logits ``[P, T, 1 + N]`` for decoder ``inputs [P, T]`` (0 = BOS, ``j + 1`` =
        object j) on the displays ``scene_index [P]``. With ``caches`` (incremental decoding),
        ``inputs`` are the steps after the ``offset`` cached ones."""
        tokens = encoded.tokens[scene_index]  # [P, 1 + N, d]
        x = torch.gather(tokens, 1, inputs[..., None].expand(-1, -1, tokens.shape[-1]))
        x = self.dropout(self.step_positions(x, offset))
        memory, memory_mask = encoded.memory[scene_index], encoded.memory_mask[scene_index]
        states = self.decoder(x, memory, memory_mask=memory_mask[:, None, None, :], caches=caches)
        logits = self.pointer(states, encoded.pointer_keys[scene_index])
        return logits.masked_fill(~memory_mask[:, None, :], float("-inf"))

    def forward(
        self,
        crops: torch.Tensor,
        cells: torch.Tensor,
        object_mask: torch.Tensor,
        targets: torch.Tensor,
        scene_index: torch.Tensor,
        inputs: torch.Tensor,
    ) -> torch.Tensor:
        """Teacher-forced pointer logits ``[P, T, 1 + N]``."""
        encoded = self.encode(crops, cells, object_mask, targets)
        return self.decode(encoded, scene_index, inputs)
