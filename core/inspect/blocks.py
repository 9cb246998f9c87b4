"""The reference path of inspection: attention weights materialised a block of queries at a time.

``softmax(q kᵀ · scale + bias)`` with the ops' masking rules (boolean mask True = may attend, causal
bottom-right aligned, ``-inf`` in the bias hides a key) and the Music Transformer relative term, for
``[N, H, Lq, D]`` inputs. A block holds ``[N, H, c, Lk]`` scores with c chosen so a block stays near
:data:`BLOCK_ELEMENTS` and below 1/16 of the whole: inspecting a long sequence never holds the full
``[N, H, Lq, Lk]`` weights.
Scores are kept in base 2 (logits · log₂e) so that the softmax runs on ``exp2``, about 1.5× cheaper
than ``exp`` on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

BLOCK_ELEMENTS = 1 << 20  # 4 MiB of fp32 scores a block: amortises the per-block work
SMALL_BLOCK = 1 << 16  # below this a call is one block whatever its size
MASKED = -1e30  # finite, so Σ p·s stays 0 on masked keys (exp2 underflows to exactly 0)
LOG2E, LN2 = 1.0 / math.log(2.0), math.log(2.0)
DistanceBlocks = Callable[[int, int], torch.Tensor]  # (start, stop) → d(i, j) of those queries


def as_4d(x: torch.Tensor, len_q: int, len_k: int) -> torch.Tensor:
    """A mask or bias broadcastable to ``[N, H, Lq, Lk]`` as a 4-D view with full query/key dims, so
    that slicing rows works whatever was broadcast (no copy)."""
    x = x.reshape((1,) * (4 - x.dim()) + tuple(x.shape))
    return x.expand(x.shape[0], x.shape[1], len_q, len_k)


def rows_per_block(n_queries: int, per_row: int) -> int:
    """Queries a block: ``BLOCK_ELEMENTS`` scores (``per_row`` each), at most 1/16 of all of them."""
    budget = min(BLOCK_ELEMENTS, max(SMALL_BLOCK, n_queries * per_row // 16))
    return max(1, budget // max(per_row, 1))


class ScoreBlocks:
    """Masked attention logits of ``q`` against ``k``, one block of queries at a time.

    Args:
        q: ``[N, H, Lq, D]``; k: ``[N, H, Lk, D]`` (scores in fp32, or fp64 for fp64 inputs).
        scale: logits scale (``1/sqrt(D)`` by default).
        mask: boolean broadcastable to ``[N, H, Lq, Lk]``, True = may attend.
        bias: float broadcastable to ``[N, H, Lq, Lk]``, added after scaling; ``-inf`` hides a key.
        causal: key j visible to query i iff ``j ≤ i + Lk − Lq``.
        rel_emb: ``[H, R, D]`` Music Transformer embeddings, adding ``q_i · E[clip(j − i)]`` (scaled);
            ``causal_table`` reads them as distances −K…0 (R = K + 1), else −K…K (R = 2K + 1).
    """

    def __init__(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        *,
        scale: float | None = None,
        mask: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        causal: bool = False,
        rel_emb: torch.Tensor | None = None,
        causal_table: bool = False,
    ) -> None:
        self.len_q, self.len_k = q.shape[-2], k.shape[-2]
        scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
        dtype = torch.promote_types(q.dtype, torch.float32)  # fp16/bf16 → fp32, fp64 stays
        self.q = q.to(dtype) * (scale * LOG2E)  # scales both terms of the logits, in base 2
        self.k_t = k.to(dtype).transpose(-1, -2).contiguous()
        self.mask = None if mask is None else as_4d(mask, self.len_q, self.len_k)
        self.bias = None if bias is None else as_4d(bias, self.len_q, self.len_k)
        self.causal = causal
        self.rel_emb = None if rel_emb is None else rel_emb.to(dtype)
        self.causal_table = causal_table

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(N, H, Lq, Lk)``."""
        return (self.q.shape[0], self.q.shape[1], self.len_q, self.len_k)

    @property
    def requires_grad(self) -> bool:
        """Whether the logits need autograd (then blocks are computed out of place)."""
        inputs = (self.q, self.k_t, self.bias, self.rel_emb)
        return any(x is not None and x.requires_grad for x in inputs)

    @property
    def rows_per_block(self) -> int:
        n, h, _, len_k = self.shape
        return rows_per_block(self.len_q, n * h * len_k)

    def blocks(self) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` query ranges of the blocks."""
        step = self.rows_per_block
        for start in range(0, self.len_q, step):
            yield start, min(start + step, self.len_q)

    def allowed(self, start: int, stop: int) -> torch.Tensor | None:
        """Boolean ``[N|1, H|1, c, Lk]``: which keys the queries ``start:stop`` may see (None: all)."""
        allowed = None if self.mask is None else self.mask[:, :, start:stop]
        if self.causal:
            rows = torch.arange(start, stop, device=self.q.device)[:, None]
            cols = torch.arange(self.len_k, device=self.q.device)
            tri = cols <= rows + (self.len_k - self.len_q)
            allowed = tri if allowed is None else allowed & tri
        if self.bias is not None:
            finite = self.bias[:, :, start:stop] > float("-inf")
            allowed = finite if allowed is None else allowed & finite
        return allowed

    def block(
        self, start: int, stop: int, out: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Base-2 scores ``[N, H, c, Lk]`` (:data:`MASKED` where hidden) of queries ``start:stop``,
        written into ``out`` when given, and their number of allowed keys (broadcastable to
        ``[N, H, c]``). Steps after the matmul are in place (none of them needs its input saved)."""
        scores = torch.matmul(self.q[:, :, start:stop], self.k_t, out=out)
        if self.rel_emb is not None:
            scores.add_(self.relative(start, stop))
        allowed = self.allowed(start, stop)
        if self.bias is not None:
            scores.add_(torch.where(allowed, self.bias[:, :, start:stop], 0) * LOG2E)
        if allowed is None:
            return scores, torch.full((1, 1, stop - start), self.len_k, device=scores.device)
        return scores.masked_fill_(~allowed, MASKED), allowed.sum(-1)

    def relative(self, start: int, stop: int) -> torch.Tensor:
        """``q_i · E[clip(j − i)]`` for queries ``start:stop``: ``[N, H, c, Lk]``.

        The block spans the distances ``−(stop − 1) … Lk − 1 − start`` (M = Lk + c − 1 of them); their
        products with q form ``[N, H, c, M]`` and row r needs columns ``j + c − 1 − r``, which in a
        row-major buffer is the strided view ``r·(M − 1) + j + c − 1`` (the Music Transformer's skew).
        """
        count = stop - start
        n_rows = self.rel_emb.shape[1]
        distances = torch.arange(-(stop - 1), self.len_k - start, device=self.q.device)
        if self.causal_table:
            rows = distances.clamp(-(n_rows - 1), 0) + n_rows - 1
        else:
            reach = (n_rows - 1) // 2
            rows = distances.clamp(-reach, reach) + reach
        products = torch.einsum("nhcd,hmd->nhcm", self.q[:, :, start:stop], self.rel_emb[:, rows])
        products = products.contiguous()
        n, h, _, m = products.shape
        return products.as_strided(
            (n, h, count, self.len_k),
            (h * count * m, count * m, m - 1, 1),
            products.storage_offset() + count - 1,
        )


def softmax_with_entropy(
    scores: torch.Tensor, differentiable: bool = False, out: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Softmax over the last dim of base-2 ``scores`` (into ``out`` when given), with each row's
    entropy (nats) and top-1 weight, from one ``exp2`` pass.

    With ``s = scores − max`` and ``Z = Σ 2^s``: ``H = ln Z − ln 2 · Σ p·s`` and ``max p = 1/Z``, so no
    log over ``[..., Lk]`` is needed. ``scores`` is consumed (left holding ``p·s``: a scratch buffer
    for the caller); with ``differentiable`` it returns a plain autograd softmax and leaves entropy
    and top-1 to the caller (None).
    """
    if differentiable:
        return torch.softmax(scores * LN2, -1), None, None
    shifted = scores.sub_(scores.amax(-1, keepdim=True))
    weights = torch.exp2(shifted, out=out)
    partition = weights.sum(-1, keepdim=True)
    weights.div_(partition)
    partition = partition.squeeze(-1)
    entropy = partition.log() - LN2 * shifted.mul_(weights).sum(-1)
    return weights, entropy, partition.reciprocal()


def coordinates_fit(positions: torch.Tensor, n: int, length: int) -> bool:
    """Whether coordinates ``[N, L, C]`` or ``[L, C]`` describe a dense call of n rows of length L."""
    if positions.dim() == 2:
        return positions.shape[0] == length
    return positions.dim() == 3 and positions.shape[:2] == (n, length)


def distance_blocks(
    positions: torch.Tensor | None, length: int, device: torch.device
) -> DistanceBlocks:
    """``d(i, j)`` for the queries ``start:stop`` of a self-attention of ``length`` tokens:
    ``|i − j|`` (``positions`` None, ``[c, L]``) or the Euclidean distance between coordinates
    ``[N, L, C]`` (→ ``[N, 1, c, L]``) or ``[L, C]`` (→ ``[c, L]``)."""
    if positions is None:
        keys = torch.arange(length, device=device)

        def index_distance(start: int, stop: int) -> torch.Tensor:
            queries = torch.arange(start, stop, device=device)[:, None]
            return (queries - keys).abs().float()

        return index_distance
    coordinates = positions.float().to(device)

    def euclidean(start: int, stop: int) -> torch.Tensor:
        between = torch.cdist(coordinates[..., start:stop, :], coordinates)
        return between if coordinates.dim() == 2 else between.unsqueeze(1)

    return euclidean
