"""ACMIL (Zhang et al. 2024, "Attention-Challenging Multiple Instance Learning for WSI
Classification") and its ABMIL baseline (Ilse et al. 2018) on packed bags of instance features.

A batch holds N bags of different sizes packed into ``[T, F]`` with int32 offsets ``cu_seqlens
[N+1]``: the attention softmax runs within each bag (``core`` segment softmax), so no bag is padded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from core.nn import AttentionPool, Dropout
from core.ops import pad_segments, segment_ids


@dataclass(frozen=True)
class ACMILConfig:
    """Hyper-parameters of :class:`ACMIL` (paper §3 and the official configs: D_inner 256 for
    512-d ResNet-18 features, gated attention of 128 hidden units, M = 5 branches, STKIM masking
    6 of the top K = 10 instances, the diversity loss at weight 1). ``n_branches=1, top_k=0`` is
    ABMIL; ``top_k=0`` or ``mask_drop=0`` turns STKIM off, ``diversity_weight=0`` the diversity
    loss (the ablations users ask for)."""

    inner_dim: int = 256
    attention_dim: int = 128
    n_branches: int = 5
    top_k: int = 10
    mask_drop: float = 0.6
    gated: bool = True
    dropout: float = 0.0
    diversity_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.n_branches < 1:
            raise ValueError(f"n_branches must be ≥ 1, got {self.n_branches}")
        if self.top_k < 0 or not 0.0 <= self.mask_drop <= 1.0:
            raise ValueError(f"need top_k ≥ 0 and 0 ≤ mask_drop ≤ 1, got {self}")


@dataclass
class MILOutput:
    """What :meth:`ACMIL.forward` returns for N bags, T instances, K branches, C classes.

    ``branch_logits [N, K, C]``: each branch's own classifier on its pooled feature (MBA);
    ``slide_logits [N, C]``: the slide classifier on the branches' mean attention, the prediction;
    ``weights [T, K]``: each branch's softmaxed attention within its bag (0 where masked);
    ``mask [T, K]``: STKIM's mask (True = kept) in training, None otherwise.
    """

    branch_logits: torch.Tensor
    slide_logits: torch.Tensor
    weights: torch.Tensor
    mask: torch.Tensor | None


class ACMIL(nn.Module):
    """Instance features → Linear (no bias) + ReLU → gated attention with K branches (MBA, §3.2),
    STKIM in training (§3.3) → per-branch classifiers and one slide classifier.

    Args:
        config: the hyper-parameters.
        feature_dim: F, the width of the instance features.
        n_classes: C.
    """

    def __init__(self, config: ACMILConfig, feature_dim: int, n_classes: int) -> None:
        super().__init__()
        self.config = config
        self.reduce = nn.Linear(feature_dim, config.inner_dim, bias=False)
        # the instance features' standardisation (identity until set from the training bags)
        self.register_buffer("feature_mean", torch.zeros(feature_dim))
        self.register_buffer("feature_std", torch.ones(feature_dim))
        self.pool = AttentionPool(
            config.inner_dim, config.attention_dim, config.n_branches, gated=config.gated
        )
        self.dropout = Dropout(config.dropout)
        # K classifiers as one batched weight: branch k's logits are W_k z_k + b_k
        bound = config.inner_dim**-0.5
        shape = (config.n_branches, n_classes, config.inner_dim)
        self.branch_weight = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
        self.branch_bias = nn.Parameter(torch.empty(shape[:2]).uniform_(-bound, bound))
        self.slide_head = nn.Linear(config.inner_dim, n_classes)

    def forward(
        self,
        features: torch.Tensor,
        cu_seqlens: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> MILOutput:
        """Classify packed bags: ``features [T, F]``, ``cu_seqlens`` int32 ``[N+1]``."""
        h = F.relu(self.reduce_standardised(features))  # [T, D]
        scores = self.pool.scores(h)  # [T, K]
        mask = None
        if self.training and self.config.top_k > 0 and self.config.mask_drop > 0:
            mask = stkim_mask(
                scores.detach(), cu_seqlens, self.config.top_k, self.config.mask_drop, generator
            )
        pooled, weights = self.pool.attend(scores, h, cu_seqlens, mask)  # [N, K, D], [T, K]
        pooled = self.dropout(pooled)
        branch_logits = torch.einsum("nkd,kcd->nkc", pooled, self.branch_weight) + self.branch_bias
        # the slide feature pools with the branches' mean attention: Σ_t mean_k a_tk h_t is the
        # mean of the branches' pooled features, so no second pass over the instances
        slide_logits = self.slide_head(pooled.mean(1))
        return MILOutput(branch_logits, slide_logits, weights, mask)

    def set_feature_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardise the instance features as ``(x − mean) / std`` from now on (``[F]`` each)."""
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std)

    def reduce_standardised(self, features: torch.Tensor) -> torch.Tensor:
        """``reduce((x − mean) / std)`` as one linear map: ``W/std · x − W/std · mean``, so the
        standardisation costs no pass over the ``[T, F]`` features."""
        weight = self.reduce.weight / self.feature_std
        return F.linear(features, weight, -(weight @ self.feature_mean))


def stkim_mask(
    scores: torch.Tensor,
    cu_seqlens: torch.Tensor,
    top_k: int,
    mask_drop: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Stochastic top-K instance masking (STKIM, §3.3): in each bag and branch, of the
    ``k = min(top_k, n)`` highest-scoring instances, ``int(k · mask_drop)`` chosen at random are
    masked, so training must find evidence beyond the few most salient instances.

    Args:
        scores: ``[T, K]`` attention logits of packed bags.
        cu_seqlens: int32 ``[N+1]`` bag offsets.

    Returns a boolean ``[T, K]`` mask, False on the masked instances.
    """
    total, branches = scores.shape
    keep = torch.ones_like(scores, dtype=torch.bool)
    if total == 0:
        return keep
    padded, valid = pad_segments(scores, cu_seqlens)  # [N, W, K], [N, W]
    padded = padded.masked_fill(~valid.unsqueeze(-1), float("-inf"))
    n_bags, width = valid.shape
    lengths = valid.sum(1)
    k = min(top_k, width)
    top = padded.topk(k, dim=1).indices  # [N, k, K] slots of the top-k per bag and branch
    k_bag = lengths.clamp(max=top_k)  # [N]
    n_masked = (k_bag.double() * mask_drop).long()  # int() as in the paper's code
    # a random order of each bag's k_bag candidates: candidates beyond k_bag sort last
    keys = torch.rand(top.shape, generator=generator, device=scores.device)
    rank = torch.arange(k, device=scores.device).view(1, k, 1)
    keys = keys.masked_fill(rank >= k_bag.view(-1, 1, 1), 2.0)
    order = keys.argsort(dim=1)  # [N, k, K]
    chosen = top.gather(1, order)  # candidates in random order
    masked = (rank < n_masked.view(-1, 1, 1)).expand_as(chosen)  # the first n_masked of them
    bags = torch.arange(n_bags, device=scores.device).view(-1, 1, 1).expand_as(chosen)
    branch = torch.arange(branches, device=scores.device).view(1, 1, -1).expand_as(chosen)
    rows = cu_seqlens.long()[bags[masked]] + chosen[masked]
    keep[rows, branch[masked]] = False
    return keep


def diversity_loss(weights: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """MBA's diversity loss: the mean over bags and branch pairs i < j of the cosine similarity of
    branch i's and branch j's attention over the bag's instances (0 for one branch).

    Args:
        weights: ``[T, K]`` softmaxed attention of packed bags.
        cu_seqlens: int32 ``[N+1]`` bag offsets.
    """
    total, branches = weights.shape
    if branches < 2:
        return weights.new_zeros(())
    bag = segment_ids(cu_seqlens, total)
    gram = weights.new_zeros(cu_seqlens.numel() - 1, branches, branches)
    gram = gram.index_add(0, bag, weights.unsqueeze(2) * weights.unsqueeze(1))  # [N, K, K]
    norms = gram.diagonal(dim1=1, dim2=2).clamp_min(1e-12).sqrt()  # [N, K]
    cosine = gram / (norms.unsqueeze(2) * norms.unsqueeze(1))
    i, j = torch.triu_indices(branches, branches, offset=1, device=weights.device)
    return cosine[:, i, j].mean()


def mil_loss(
    output: MILOutput,
    labels: torch.Tensor,
    cu_seqlens: torch.Tensor,
    diversity_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """ACMIL's training loss, summed: the branches' cross-entropy (each branch against the slide
    label; only with K > 1), the slide classifier's cross-entropy and the diversity loss (times
    ``diversity_weight``; 1 in the paper)."""
    slide = F.cross_entropy(output.slide_logits, labels)
    _, branches, n_classes = output.branch_logits.shape
    if branches > 1:
        branch = F.cross_entropy(
            output.branch_logits.reshape(-1, n_classes), labels.repeat_interleave(branches)
        )
        diversity = diversity_loss(output.weights, cu_seqlens)
    else:
        branch = diversity = slide.new_zeros(())
    return {"loss": slide + branch + diversity_weight * diversity, "slide": slide, "branch": branch,
            "diversity": diversity}  # fmt: skip
