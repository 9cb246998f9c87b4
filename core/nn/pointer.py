"""PointerAttention: the additive attention of Pointer Networks (Vinyals et al. 2015, §2.3) as a module."""

from __future__ import annotations

import torch
from torch import nn

from core.nn.attention import RECORDER
from core.ops.pointer_attention import pointer_attention


class PointerAttention(nn.Module):
    """``u_ij = vᵀ tanh(W₁ e_j + W₂ d_i)`` — logits over the inputs j for each decoder state i.

    ``project_keys`` computes ``W₁ e`` once per input sequence; ``forward`` scores one decoder step
    ``[B, dec_dim]`` or a whole teacher-forced sequence ``[B, T, dec_dim]`` against it.
    """

    def __init__(self, enc_dim: int, dec_dim: int, attn_dim: int) -> None:
        super().__init__()
        self.W1 = nn.Linear(enc_dim, attn_dim, bias=False)
        self.W2 = nn.Linear(dec_dim, attn_dim, bias=False)
        self.v = nn.Parameter(torch.empty(attn_dim).uniform_(-(attn_dim**-0.5), attn_dim**-0.5))

    def project_keys(self, encoder_states: torch.Tensor) -> torch.Tensor:
        """``W₁ e``: [B, N, enc_dim] → [B, N, attn_dim]."""
        return self.W1(encoder_states)

    def forward(
        self,
        decoder_states: torch.Tensor,
        keys: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [B, T, N] (or [B, N] for one step [B, dec_dim]); ``keys`` from ``project_keys``;
        ``mask`` True = may be pointed at, -inf elsewhere."""
        query = self.W2(decoder_states)
        recorder = RECORDER.active
        if recorder is not None:
            return recorder.pointer_attention(self, query, keys, self.v, mask=mask)
        return pointer_attention(query, keys, self.v, mask=mask)
