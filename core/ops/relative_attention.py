"""Relative-position self-attention of the Music Transformer (Huang et al. 2018, §3.4), memory-efficient.

Logits are ``(q_i·k_j + q_i·E[clip(j − i)]) · scale``: a learned embedding per relative distance, as in
Shaw et al. (2018) but without their ``[L, L, D]`` tensor. The relative term ``Q Eᵀ`` is computed once per
distance (``[B, H, L, M]``, M = 2L − 1 or L) and *skewed* into ``[B, H, L, L]`` so that entry (i, j) reads
distance ``j − i`` — the only extra memory beyond the logits is the gathered ``E`` rows, O(L·D).

The PyTorch reference goes one step further and never holds the ``[B, H, L, L]`` logits either: it
runs by blocks of query rows (:class:`_BlockedRelativeAttention`, FlashAttention's scheme in plain
PyTorch ops: the softmax is recomputed in backward from a saved log-sum-exp), so training keeps O(L·D)
per layer for backward and works in O(rows·L) at a time; causal blocks skip the keys after their last
row. :func:`relative_logits` (the whole skewed term) stays for tests, benchmarks and inspection.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from core.ops._checks import check_finite, check_floating, check_rank, check_same
from core.ops.attention import validate_dense
from core.ops.backend import dispatch


def relative_distance_rows(rel_emb: Tensor, length: int, causal: bool) -> Tensor:
    """Rows of ``rel_emb`` ``[H, R, D]`` for the distances ``-(L-1) … 0`` (causal, M = L) or
    ``-(L-1) … L-1`` (bidirectional, M = 2L − 1), clipped to ±K: returns ``[H, M, D]``, O(L·D)."""
    max_rel = rel_emb.shape[-2] - 1 if causal else (rel_emb.shape[-2] - 1) // 2
    last = 0 if causal else length - 1
    if length - 1 <= max_rel:  # no distance is clipped: a view
        return rel_emb[:, max_rel - (length - 1) : max_rel + last + 1]
    distances = torch.arange(-(length - 1), last + 1, device=rel_emb.device)
    return rel_emb[:, distances.clamp(-max_rel, max_rel) + max_rel]


def skew(qe: Tensor, length: int) -> Tensor:
    """The skewing trick (§3.4.1): ``[B, H, L, M]`` indexed by distance → ``[B, H, L, L]`` indexed by key.

    Entry (i, j) must be column ``j − i + L − 1``; in the row-major buffer of width M that is offset
    ``L − 1 + i·(M − 1) + j``, so slicing the flattened rows from offset L − 1 and reading them L·(M − 1)
    at a time, rows of M − 1, does the paper's pad-reshape-slice with views only (and a backward that
    is a plain slice's, not ``as_strided``'s). Causal M = L first gets one padding column (M − 1 ≥ L);
    entries above the diagonal then read the next row's data, and are masked.
    """
    if qe.shape[-1] < length + 1:
        qe = torch.nn.functional.pad(qe, (0, length + 1 - qe.shape[-1]))
    width = qe.shape[-1] - 1
    flat = qe.flatten(-2)[..., length - 1 : length - 1 + length * width]
    return flat.unflatten(-1, (length, width))[..., :length]


def relative_logits(q: Tensor, rel_emb: Tensor, causal: bool) -> Tensor:
    """Unscaled relative term ``S_rel[b, h, i, j] = q_i · E[clip(j − i)]``, ``[B, H, L, L]``."""
    rows = relative_distance_rows(rel_emb, q.shape[-2], causal)
    return skew(torch.einsum("bhld,hmd->bhlm", q, rows), q.shape[-2])


def relative_logits_last(q: Tensor, rel_emb: Tensor, keys: int, causal: bool) -> Tensor:
    """Unscaled relative term for l queries that are the *last* l of ``keys`` positions (incremental
    decoding with a key/value cache): ``S_rel[b, h, i, j] = q_i · E[clip(j − p_i)]``, p_i = keys − l + i,
    ``[B, H, l, keys]``. Entries with j > p_i read the nearest row and must be masked (causal)."""
    batch, heads, length, _ = q.shape
    qe = torch.matmul(q, relative_distance_rows(rel_emb, keys, causal).transpose(-1, -2))
    if length == 1:  # the last position: column m is distance m − (keys − 1), i.e. key m
        return qe[..., :keys]
    positions = torch.arange(keys - length, keys, device=q.device)
    key_index = torch.arange(keys, device=q.device)
    column = (key_index[None] - positions[:, None] + keys - 1).clamp(max=qe.shape[-1] - 1)
    return qe.gather(-1, column.expand(batch, heads, length, keys))


BLOCK_ROWS = 128  # query rows per block: the fastest on a 2-core AVX2 CPU at L = 1024 and 2048
BLOCK_LOGITS = 1 << 23  # at most this many logits in one block, all batches and heads (32 MiB fp32)
MIN_BLOCK_ROWS = 16  # fewer rows make the matrix products too thin to run at speed


def block_rows(batch_heads: int, length: int) -> int:
    """Query rows per block: :data:`BLOCK_ROWS`, fewer where ``[B, H, rows, L]`` would exceed
    :data:`BLOCK_LOGITS`, never under :data:`MIN_BLOCK_ROWS`."""
    budget = BLOCK_LOGITS // max(1, batch_heads * length)
    return max(MIN_BLOCK_ROWS, min(length, BLOCK_ROWS, budget))


class _BlockedRelativeAttention(torch.autograd.Function):
    """Relative attention by query blocks, in the manner of FlashAttention but with PyTorch ops.

    Forward, per block of c query rows ``start:stop`` (keys ``0:stop`` when causal, all L otherwise):
    logits ``S = q_c kᵀ + skew(q_c E_cᵀ)`` (q pre-scaled), masked in place, then an in-place softmax
    ``P = exp(S − m) / l``, ``out_c = P v``; only the row log-sum-exp ``m + log l`` is kept. ``E_c`` are
    the rows of ``rel_emb`` for the distances the block reads: ``−(stop − 1) … L − 1 − start``
    (M = L + c − 1), or when causal only ``−(stop − 1) … 0`` (M = stop: later keys are masked, so
    no row is spent on them); row r of the block reads column ``j + c − 1 − r``, a strided view (the
    skew). Backward recomputes each block's ``P`` from the log-sum-exp and takes ``dS = P ∘ (dP −
    rowsum(dO ∘ O))``: ``dq = (dS k + unskew(dS) E_c)·scale``, ``dk += dSᵀ q_c``, ``dv += Pᵀ dO`` and
    the embedding rows ``dE_c = unskew(dS)ᵀ q_c``, added into ``rel_emb``'s rows by distance (clipped
    distances share a row). ``unskew`` is ``dS`` padded with zero columns and read with another
    stride, again a view.

    Memory: saved for backward are q, k, v, ``rel_emb``, the output and the log-sum-exp, O(L·D); the
    transient work is O(c·L) per batch and head — never ``[B, H, L, L]``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        rel_emb: Tensor,
        causal: bool,
        mask: Tensor | None,
        scale: float,
    ) -> Tensor:
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        blocks = _Blocks(q, k, rel_emb, causal, mask, scale)
        out = v.new_empty(*q.shape[:3], v.shape[-1])
        lse = q.new_empty(q.shape[:3], dtype=blocks.acc)
        for start, stop in blocks:
            keys = blocks.keys(stop)
            p, _ = blocks.logits(start, stop)
            top = p.amax(-1, keepdim=True).nan_to_num_(0.0, 0.0, 0.0)  # -inf: a fully masked row
            total = p.sub_(top).exp_().sum(-1, keepdim=True).clamp_min_(torch.finfo(p.dtype).tiny)
            block_out = torch.matmul(p.to(v.dtype), v[:, :, :keys])
            out[:, :, start:stop] = block_out.div_(total)
            lse[:, :, start:stop] = top.add_(total.log_()).squeeze(-1)
        ctx.save_for_backward(q, k, v, rel_emb, out, lse, mask)
        ctx.causal, ctx.scale = causal, scale
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor
    ) -> tuple[Tensor | None, ...]:
        q, k, v, rel_emb, out, lse, mask = ctx.saved_tensors
        blocks = _Blocks(q, k, rel_emb, ctx.causal, mask, ctx.scale)
        acc, dtype = blocks.acc, q.dtype
        grad_out = grad_out.contiguous()
        delta = (grad_out.to(acc) * out.to(acc)).sum(-1, keepdim=True)  # rowsum(dO ∘ O)
        dq = torch.empty_like(q)
        dk = torch.zeros(k.shape, dtype=acc, device=k.device)
        dv = torch.zeros(v.shape, dtype=acc, device=v.device)
        d_emb = torch.zeros(rel_emb.shape, dtype=acc, device=rel_emb.device)
        for start, stop in blocks:
            keys = blocks.keys(stop)
            p, rows = blocks.logits(start, stop)
            p = p.sub_(lse[:, :, start:stop, None]).exp_()
            d_out = grad_out[:, :, start:stop]
            dv[:, :, :keys] += torch.matmul(p.to(dtype).transpose(-1, -2), d_out)
            d_p = blocks.buffer("d_p", (*p.shape[:2], stop - start, keys))
            d_p = torch.matmul(d_out, v[:, :, :keys].transpose(-1, -2), out=d_p).to(acc)
            padded, d_s = blocks.gradient_buffer(stop - start, keys)
            torch.mul(d_p.sub_(delta[:, :, start:stop]), p, out=d_s)
            del p, d_p
            q_block = blocks.q[:, :, start:stop]
            dk[:, :, :keys] += torch.matmul(d_s.transpose(-1, -2), q_block)
            d_qe = blocks.unskew(padded, keys)
            d_q = torch.matmul(d_s, k[:, :, :keys]).add_(torch.matmul(d_qe, rows))
            dq[:, :, start:stop] = d_q.mul_(ctx.scale)
            if ctx.needs_input_grad[3]:
                d_rows = torch.matmul(d_qe.transpose(-1, -2), q_block).sum(0)
                blocks.add_rows(d_emb, start, stop, d_rows.to(acc))
        grads = (dq, dk.to(dtype), dv.to(v.dtype), d_emb.to(rel_emb.dtype))
        wanted = (g if need else None for g, need in zip(grads, ctx.needs_input_grad, strict=False))
        return (*wanted, None, None, None)


class _Blocks:
    """Query blocks of :class:`_BlockedRelativeAttention` and the logits of each (q pre-scaled)."""

    def __init__(
        self, q: Tensor, k: Tensor, rel_emb: Tensor, causal: bool, mask: Tensor | None, scale: float
    ) -> None:
        self.q, self.k_t, self.rel_emb = q * scale, k.transpose(-1, -2), rel_emb
        self.causal, self.length = causal, q.shape[2]
        self.mask = None if mask is None else mask.reshape((1,) * (4 - mask.dim()) + mask.shape)
        self.acc = torch.promote_types(q.dtype, torch.float32)  # softmax precision
        self.rows = block_rows(q.shape[0] * q.shape[1], self.length)
        self.max_rel = rel_emb.shape[1] - 1 if causal else (rel_emb.shape[1] - 1) // 2
        # −inf above the diagonal, added to the diagonal block of causal logits
        hidden = torch.ones(self.rows, self.rows, dtype=torch.bool, device=q.device).triu_(1)
        self.future = torch.zeros(hidden.shape, dtype=self.acc, device=q.device)
        self.future.masked_fill_(hidden, float("-inf"))
        # the widest block's work tensors (per name), allocated once and reused by every block
        batch_heads, rows, length = q.shape[0] * q.shape[1], self.rows, self.length
        logits = batch_heads * rows * length
        self.sizes = {
            "logits": logits,
            "d_p": logits,
            "qe": batch_heads * rows * (length + (0 if causal else rows - 1)),
            "padded": batch_heads * rows * (length + 2 * rows - 2),
        }
        self.buffers: dict[str, Tensor] = {}

    def buffer(self, name: str, shape: tuple[int, ...]) -> Tensor:
        """An uninitialised ``shape`` tensor (q's dtype) in the buffer ``name``, which every block
        reuses: fresh memory for each block would be paged in by the OS anew each time."""
        if name not in self.buffers:
            self.buffers[name] = self.q.new_empty(self.sizes[name])
        return self.buffers[name][: math.prod(shape)].view(shape)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for start in range(0, self.length, self.rows):
            yield start, min(start + self.rows, self.length)

    def keys(self, stop: int) -> int:
        """Keys the block's rows may see: ``0:stop`` when causal, all otherwise."""
        return stop if self.causal else self.length

    def row_index(self, start: int, stop: int) -> Tensor | slice:
        """``rel_emb`` row of each distance the block reads, ``−(stop − 1) … 0`` (causal: M = stop)
        or ``−(stop − 1) … L − 1 − start`` (M = L + c − 1): a slice where none is clipped."""
        first, last = -(stop - 1), 0 if self.causal else self.length - 1 - start
        if -self.max_rel <= first and last <= self.max_rel:
            return slice(first + self.max_rel, last + self.max_rel + 1)
        distances = torch.arange(first, last + 1, device=self.rel_emb.device)
        return distances.clamp_(-self.max_rel, self.max_rel).add_(self.max_rel)

    def add_rows(self, d_emb: Tensor, start: int, stop: int, d_rows: Tensor) -> None:
        """Add the gradients of the block's embedding rows ``[H, M, D]`` into ``d_emb`` by row."""
        index = self.row_index(start, stop)
        if isinstance(index, slice):
            d_emb[:, index] += d_rows
        else:
            d_emb.index_add_(1, index, d_rows)

    @staticmethod
    def skew(qe: Tensor, batch: int, keys: int) -> Tensor:
        """``[H, B·c, M]`` by distance → ``[B, H, c, keys]`` by key: entry (r, j) is column
        ``j + c − 1 − r``, offset ``r·(M − 1) + j + c − 1`` of the contiguous rows, a strided view.
        Causal M = keys: the entries above the diagonal (masked) read the next row."""
        heads, rows, width = qe.shape
        count = rows // batch
        return qe.as_strided(
            (batch, heads, count, keys),
            (count * width, rows * width, width - 1, 1),
            qe.storage_offset() + count - 1,
        )

    def gradient_buffer(self, count: int, keys: int) -> tuple[Tensor, Tensor]:
        """``[B, H, c, W]`` for the logits' gradient ``dS`` (the view returned with it, columns
        ``c − 1 … c − 2 + keys``) between zero columns: c − 1 on the left, and as many on the right
        unless causal (for :meth:`unskew`)."""
        left, right = count - 1, 0 if self.causal else count - 1
        padded = self.buffer("padded", (*self.q.shape[:2], count, left + keys + right))
        padded[..., :left].zero_()
        padded[..., left + keys :].zero_()
        return padded, padded[..., left : left + keys]

    def unskew(self, padded: Tensor, keys: int) -> Tensor:
        """The adjoint of :meth:`skew`, ``dS [B, H, c, keys]`` → ``[B, H, c, M]``, read from its
        :meth:`gradient_buffer`: column m of row r is ``dS[r, m + r − (c − 1)]`` (zero outside),
        i.e. the padded rows read with row stride ``W + 1`` (causal rows need no padding on the right:
        their columns past the diagonal are zero)."""
        batch, heads, count, stride = padded.shape
        width = keys if self.causal else keys + count - 1
        return padded.as_strided(
            (batch, heads, count, width), (heads * count * stride, count * stride, stride + 1, 1)
        )

    def logits(self, start: int, stop: int) -> tuple[Tensor, Tensor]:
        """Scaled, masked logits ``[B, H, c, keys]`` of queries ``start:stop`` (in :attr:`acc`) and
        the embedding rows ``[H, M, D]`` they used."""
        keys = self.keys(stop)
        q = self.q[:, :, start:stop]
        rows = self.rel_emb[:, self.row_index(start, stop)]
        batch, heads, count, _ = q.shape
        logits = self.buffer("logits", (batch, heads, count, keys))
        logits = torch.matmul(q, self.k_t[..., :keys], out=logits)
        # q E_cᵀ batched over heads alone ([H, B·c, D] @ [H, D, M]): E_c is shared by the batch
        q_heads = q.transpose(0, 1).reshape(heads, batch * count, -1)
        qe = self.buffer("qe", (heads, batch * count, rows.shape[1]))
        qe = torch.matmul(q_heads, rows.transpose(-1, -2), out=qe)
        logits = logits.add_(self.skew(qe, q.shape[0], keys)).to(self.acc)
        if self.causal:  # the diagonal block: key j > query i is hidden
            logits[..., start:stop] += self.future[: stop - start, : stop - start]
        if self.mask is not None:
            mask = self.mask if self.mask.shape[2] == 1 else self.mask[:, :, start:stop]
            logits.masked_fill_(~mask[..., :keys], float("-inf"))
        return logits, rows


def relative_attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    rel_emb: Tensor,
    causal: bool,
    mask: Tensor | None,
    scale: float,
) -> Tensor:
    """PyTorch path: :class:`_BlockedRelativeAttention`, by blocks of query rows with the softmax
    recomputed in backward — same result as SDPA with the skewed relative logits as an additive bias,
    without its ``[B, H, L, L]`` tensors (bias, merged mask, weights; ~4 per layer kept for backward)."""
    return _BlockedRelativeAttention.apply(q, k, v, rel_emb, causal, mask, scale)


def relative_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    rel_emb: Tensor,
    *,
    causal: bool = False,
    mask: Tensor | None = None,
    scale: float | None = None,
    backend: str | None = None,
) -> Tensor:
    """Music Transformer relative self-attention.

    Args:
        q: ``[B, H, L, D]`` (self-attention: q, k and v share one length L).
        k: ``[B, H, L, D]``.
        v: ``[B, H, L, Dv]``.
        rel_emb: ``[H, R, D]`` per head or ``[R, D]`` shared. Row r holds distance ``r − K`` where
            K = max_relative_position: R = K + 1 rows for ``causal`` (distances −K…0), R = 2K + 1 for
            bidirectional (−K…K). Distances beyond ±K use the edge row (Shaw et al.'s clip); take
            K = L_max − 1 for the unclipped Music Transformer.
        causal: decoder self-attention (j ≤ i).
        mask: boolean, broadcastable to ``[B, H, L, L]``, True = may attend (e.g. key padding).
        scale: defaults to ``1/sqrt(D)``; it scales both terms, as in the paper.

    Returns ``[B, H, L, Dv]``.
    """
    validate_dense(q, k, v, mask, None)
    check_same(
        "query/key lengths (relative attention is self-attention)", q=q.shape[2], k=k.shape[2]
    )
    if rel_emb.dim() == 2:
        rel_emb = rel_emb.unsqueeze(0).expand(q.shape[1], -1, -1)
    check_rank("rel_emb", rel_emb, 3, "[H, R, D] or [R, D]")
    check_floating("rel_emb", rel_emb)
    check_same("heads", q=q.shape[1], rel_emb=rel_emb.shape[0])
    check_same("head dims", q=q.shape[3], rel_emb=rel_emb.shape[2])
    if not causal and rel_emb.shape[1] % 2 == 0:
        raise ValueError(
            f"bidirectional rel_emb needs an odd number of rows 2K+1, got R={rel_emb.shape[1]}"
        )
    check_finite("rel_emb", rel_emb)
    scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    return dispatch(
        "relative_attention", backend,
        q=q, k=k, v=v, rel_emb=rel_emb, causal=causal, mask=mask, scale=scale,
    )  # fmt: skip
