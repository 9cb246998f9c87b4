"""Attention-based MIL pooling: gated attention (ABMIL, Ilse et al. 2018, §2.4) with multiple branches
(ACMIL's MBA, Zhang et al. 2024, §3.2), over packed bags or a padded batch.
"""

from __future__ import annotations

import torch
from torch import nn

from core.nn.attention import RECORDER
from core.nn.dropout import Dropout
from core.ops import attention_pool


class AttentionPool(nn.Module):
    """Score every instance, softmax within its bag, and return the weighted sum of the instances.

    Score of instance h for branch k: ``a_k = w_kᵀ (tanh(V h) ⊙ sigmoid(U h))`` (gated) or
    ``w_kᵀ tanh(V h)`` (not gated). The branches share V and U and own one row ``w_k`` each of the score
    head (MBA); the weights of one branch sum to 1 over each bag.

    Args:
        in_dim: instance width D.
        hidden_dim: width of V h and U h (128 in ABMIL).
        n_branches: K attention branches (1 = ABMIL; ACMIL uses 5).
        gated: use the gated attention mechanism (ABMIL's better variant).
        dropout: dropout on the (gated) hidden features before the score head.

    Two input forms (see :meth:`forward`): packed bags ``[T, D]`` + ``cu_seqlens`` or a padded batch
    ``[B, N, D]``. The padded form is pooled by masking: padding instances stay in place with weight 0.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 128,
        n_branches: int = 1,
        gated: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_dim, self.n_branches = in_dim, n_branches
        self.attention_V = nn.Linear(in_dim, hidden_dim)
        self.attention_U = nn.Linear(in_dim, hidden_dim) if gated else None
        self.attention_w = nn.Linear(hidden_dim, n_branches, bias=False)
        self.dropout = Dropout(dropout)

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """Unnormalised attention scores ``[..., K]`` of instances ``h [..., D]``."""
        hidden = torch.tanh(self.attention_V(h))
        if self.attention_U is not None:
            hidden = hidden * torch.sigmoid(self.attention_U(h))
        return self.attention_w(self.dropout(hidden))

    def forward(
        self,
        h: torch.Tensor,
        cu_seqlens: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool bags of instances.

        Args:
            h: packed instances ``[T, D]`` (with ``cu_seqlens``) or a padded batch ``[B, N, D]``
                (without; padding rows must be finite, e.g. zeros).
            cu_seqlens: int32 ``[N+1]`` bag offsets of packed h.
            mask: boolean, True = the instance may be attended: ``[T]`` / ``[T, K]`` for packed h,
                ``[B, N]`` (a key-padding mask: True = real instance) / ``[B, N, K]`` for padded h.
                Per-branch masks serve ACMIL's stochastic top-K masking.

        Returns (pooled ``[N, K, D]``, weights ``[T, K]``) for packed h, (pooled ``[B, K, D]``, weights
        ``[B, N, K]``) for padded h. A bag with no visible instance pools to zeros.
        """
        if h.dim() not in (2, 3) or h.shape[-1] != self.in_dim:
            raise ValueError(
                f"h must be [T, in_dim] (packed) or [B, N, in_dim] (padded) with in_dim="
                f"{self.in_dim}, got shape {tuple(h.shape)}"
            )
        instances = h.shape[:-1]
        if mask is not None:
            if mask.dtype != torch.bool or mask.shape not in (
                instances,
                (*instances, self.n_branches),
            ):
                raise ValueError(
                    f"mask must be boolean {tuple(instances)} or {(*instances, self.n_branches)} "
                    f"(True = may attend), got {mask.dtype} of shape {tuple(mask.shape)}"
                )
            if mask.shape == instances:
                mask = mask.unsqueeze(-1)
            mask = mask.expand(*instances, self.n_branches)
        if h.dim() == 3:
            if cu_seqlens is not None:
                raise ValueError(
                    "cu_seqlens is for packed h [T, in_dim]; padded h [B, N, in_dim] needs none"
                )
            batch, bag = instances
            cu_seqlens = torch.arange(batch + 1, device=h.device, dtype=torch.int32) * bag
            h = h.flatten(0, 1)
            mask = None if mask is None else mask.flatten(0, 1)
        elif cu_seqlens is None:
            raise ValueError("packed h [T, in_dim] needs cu_seqlens [N+1] (bag offsets)")
        pooled, weights = self.attend(self.scores(h), h, cu_seqlens, mask)
        return pooled, weights.view(*instances, self.n_branches)

    def attend(
        self,
        scores: torch.Tensor,
        h: torch.Tensor,
        cu_seqlens: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool packed ``h [T, D]`` with given ``scores [T, K]`` (from :meth:`scores`) and an optional
        boolean ``mask [T, K]``: (pooled ``[N, K, D]``, weights ``[T, K]``). A model that masks by
        the scores themselves (ACMIL's stochastic top-K masking) scores once, masks, then calls this;
        the attention inspector records here."""
        recorder = RECORDER.active
        if recorder is not None:
            return recorder.attention_pool(self, scores, h, cu_seqlens, mask=mask)
        return attention_pool(scores, h, cu_seqlens, mask=mask)
