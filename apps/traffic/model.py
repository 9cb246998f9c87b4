"""STTN: the spatial-temporal transformer network of Xu et al. 2020, "Spatial-Temporal Transformer
Networks for Traffic Flow Forecasting" (arXiv 2001.02908).

``x [B, T_in, N, C]`` (normalised readings and time features) → ``[B, T_out, N]`` (normalised
forecast). ST blocks, each a spatial transformer (§3.2: attention over sensors at every time step,
with dynamic directed dependencies, fused by a gate with a fixed-graph Chebyshev convolution) then a
temporal transformer (§3.3: attention over time steps at every sensor), and an output layer (§3.4)
that maps the T_in steps of history to the T_out steps of the horizon at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from apps.traffic.graph import ChebGraphConv, SensorGraph, laplacian_eigenvectors
from core.nn import TransformerEncoderLayer


@dataclass(frozen=True)
class STTNConfig:
    """Hyper-parameters of :class:`STTN` (official code: one ST block of width 64, FFN 128,
    Chebyshev K = 3, dropout 0.1; one head — the public PyTorch port uses 2).

    ``rollout``: the official code's inference: the output layer predicts one step and the forecast
    is rolled out step by step, feeding each prediction back (training then fits the next step
    only); False maps the history to the whole horizon at once (the paper's output layer).
    """

    d_model: int = 64
    n_heads: int = 2
    ffn_dim: int = 128
    num_blocks: int = 1
    cheb_k: int = 3
    dropout: float = 0.1
    rollout: bool = False


class SpatialTransformer(nn.Module):
    """§3.2. ``[B, T, N, d] → [B, T, N, d]``.

    - spatial positional embedding ``D_S [N, d]``, learned, initialised from the graph Laplacian's
      eigenvectors (sensors close on the graph start with similar codes);
    - dynamic graph: multi-head self-attention over the N sensors of each time step plus FFN (a
      post-norm transformer layer) → ``U_S``; q and k are separate projections, so the learned
      dependency ``softmax(QKᵀ/√d)`` is directed (i may listen to j without j listening to i);
    - fixed graph: Chebyshev graph convolution on the road graph → ``X_G``;
    - gate (eq. 7–8): ``g = σ(f_S(U_S) + f_G(X_G))``, output ``g ⊙ U_S + (1 − g) ⊙ X_G``.
    """

    def __init__(self, config: STTNConfig, graph: SensorGraph) -> None:
        super().__init__()
        d = config.d_model
        self.embedding = nn.Parameter(laplacian_eigenvectors(graph, d))
        self.attention = TransformerEncoderLayer(d, config.n_heads, config.ffn_dim, config.dropout)
        self.graph_conv = ChebGraphConv(d, d, config.cheb_k, graph)
        self.gate_s = nn.Linear(d, d)
        self.gate_g = nn.Linear(d, d)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, T, N, d = h.shape
        h = h + self.embedding
        dynamic = self.attention(h.reshape(B * T, N, d)).reshape(B, T, N, d)
        fixed = torch.relu(self.graph_conv(h))
        gate = torch.sigmoid(self.gate_s(dynamic) + self.gate_g(fixed))
        return gate * dynamic + (1 - gate) * fixed


class TemporalTransformer(nn.Module):
    """§3.3. ``[B, T, N, d] → [B, T, N, d]``: a learned temporal embedding ``D_T [T, d]``, then
    bidirectional multi-head self-attention over the T steps of each sensor plus FFN."""

    def __init__(self, config: STTNConfig, steps: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(steps, config.d_model) * 0.02)
        self.attention = TransformerEncoderLayer(
            config.d_model, config.n_heads, config.ffn_dim, config.dropout
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, T, N, d = h.shape
        h = (h + self.embedding[:, None, :]).transpose(1, 2).reshape(B * N, T, d)
        return self.attention(h).reshape(B, N, T, d).transpose(1, 2)


class STBlock(nn.Module):
    """A spatial then a temporal transformer, each with a residual connection and LayerNorm."""

    def __init__(self, config: STTNConfig, graph: SensorGraph, steps: int) -> None:
        super().__init__()
        self.spatial = SpatialTransformer(config, graph)
        self.temporal = TemporalTransformer(config, steps)
        self.norm_s = nn.LayerNorm(config.d_model)
        self.norm_t = nn.LayerNorm(config.d_model)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.norm_s(h + self.spatial(h))
        return self.norm_t(h + self.temporal(h))


class STTN(nn.Module):
    """The network: input 1×1 projection → ST blocks → output layer.

    Args:
        config: hyper-parameters.
        graph: the road graph (fixed-graph branch and spatial-embedding initialisation).
        in_channels: C, readings plus time features per sensor and step.
        history: T_in; horizon: T_out.

    ``forward(x [B, T_in, N, C]) → [B, T_out', N]`` with ``T_out' = horizon`` (or 1 when
    ``config.rollout``; :meth:`rollout` then forecasts the horizon).
    """

    def __init__(
        self,
        config: STTNConfig,
        graph: SensorGraph,
        in_channels: int,
        history: int,
        horizon: int,
    ) -> None:
        super().__init__()
        self.config, self.history, self.horizon = config, history, horizon
        d = config.d_model
        self.input = nn.Linear(in_channels, d)
        self.blocks = nn.ModuleList(
            STBlock(config, graph, history) for _ in range(config.num_blocks)
        )
        # §3.4: two 1×1 convolutions, over time (T_in → T_out) then over channels (d → 1)
        self.time_map = nn.Linear(history, 1 if config.rollout else horizon)
        self.readout = nn.Linear(d, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.input(x)
        for block in self.blocks:
            h = block(h)
        h = torch.relu(self.time_map(h.movedim(1, -1))).movedim(-1, 1)  # [B, T_out', N, d]
        return self.readout(h).squeeze(-1)

    def rollout(self, x: torch.Tensor, future_features: torch.Tensor) -> torch.Tensor:
        """Forecast the horizon one step at a time: ``x [B, T_in, N, C]``, ``future_features
        [B, T_out, N, C − 1]`` (the time features of the steps to come) → ``[B, T_out, N]``."""
        window, steps = x, []
        for k in range(self.horizon):
            step = self(window)[:, :1]  # [B, 1, N]
            steps.append(step)
            nxt = torch.cat([step[..., None], future_features[:, k : k + 1]], dim=-1)
            window = torch.cat([window[:, 1:], nxt], dim=1)
        return torch.cat(steps, dim=1)

    def forecast(self, x: torch.Tensor, future_features: torch.Tensor) -> torch.Tensor:
        """The horizon ``[B, T_out, N]`` whichever the output mode."""
        return self.rollout(x, future_features) if self.config.rollout else self(x)
