"""Music Transformer relative self-attention (Huang et al. 2018, §3.4) with the relative term fused in.

``q, k [B, H, L, D]``, ``v [B, H, L, Dv]``, ``rel_emb [H, R, D]`` → ``[B, H, L, Dv]``. A tile of
BLOCK_M queries × BLOCK_N keys spans only BLOCK_M + BLOCK_N − 1 distances ``j − i``, so the kernel loads
those rows of E (clipped to ±K), computes ``q Eᵀ`` for the tile with one more ``tl.dot`` and gathers entry
(i, j) from column ``j − i − dist0`` — the skewing trick done in registers: no ``[L, L]`` logits and no
``[L, M]`` relative scores in memory. The backward un-skews dS the same way to get dQ's relative part and
dE (added atomically across programs).
"""

from __future__ import annotations

import torch

from core.kernels._flash import flash_attention


def relative_attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_emb: torch.Tensor,
    *,
    causal: bool,
    mask: torch.Tensor | None = None,
    scale: float,
) -> torch.Tensor:
    """``softmax((q_i·k_j + q_i·E[h, clip(j − i)])·scale) v`` with Lq == Lk.

    ``rel_emb`` row r holds distance r − K: R = K + 1 rows (−K…0) if ``causal`` (which also hides
    j > i), else R = 2K + 1 (−K…K); farther distances use the edge row. ``mask`` (True = may attend)
    broadcasts to ``[B, H, L, L]``. Gradients flow to q, k, v and ``rel_emb``.
    """
    return flash_attention(
        q, k, v, scale=scale, causal=causal, mask=mask, rel_emb=rel_emb, rel_causal=causal
    )
