"""FlashAttention-2 (Dao 2023): one tiled softmax-attention kernel family behind three ops.

* dense ``[B, H, L, D]`` attention with boolean mask, additive bias and bottom-right causal masking;
* Music Transformer relative self-attention (Huang et al. 2018, §3.4), the relative term fused in;
* varlen attention over packed ``[T, H, D]`` segments with ``cu_seqlens`` (the FlashAttention varlen
  convention), nothing padded.

:func:`flash_attention` serves all three (``core.ops.backend`` passes each op's arguments by name).

They differ only in how a tile's logits are formed and where a sequence starts, so the features are
``tl.constexpr`` flags and each combination compiles to its own specialised kernel:

* forward: one program per (sequence · head, query block) streams the key blocks with the online softmax
  and keeps the base-2 log-sum-exp of every row for the backward;
* backward: ``delta = rowsum(dO ∘ O)`` in PyTorch, then one program per key block accumulates dK, dV
  (and writes dBias) and one per query block accumulates dQ (and adds dE with atomics), both recomputing
  the probabilities from the log-sum-exp instead of storing ``[L, L]``.

Relative term: a tile of BLOCK_M queries × BLOCK_N keys spans only BLOCK_M + BLOCK_N − 1 distances
``j − i``, so a program loads just those rows of E (clipped to ±K), forms ``q Eᵀ`` with one more
``tl.dot`` and gathers entry (i, j) from column ``j − i − dist0``: the skewing trick done in registers.

Kernels see ``[B, H, L, D]`` tensors with unit stride on D, and take each tensor's strides as one tuple
named after it (``stride_q``, ``stride_mask``, …). Varlen views packed ``[T, H, D]`` as ``[1, H, T, D]``:
a program's sequence is a segment of that single batch, located through ``cu_seqlens``.
"""

# Triton convention: compile-time meta-parameters (tl.constexpr) are UPPER_CASE.
# ruff: noqa: N803

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from core.kernels import _common
from core.kernels._autotune import autotune
from core.kernels._common import load_rows, store_rows

LOG2E_VALUE = 1.4426950408889634  # exp(x) = exp2(x·log2 e): the kernels work in base 2
LOG2E: tl.constexpr = tl.constexpr(LOG2E_VALUE)


def _config(block_m: int, block_n: int, warps: int, stages: int) -> triton.Config:
    """``REL_WIDTH`` covers the BLOCK_M + BLOCK_N − 1 relative distances one tile spans."""
    width = triton.next_power_of_2(block_m + block_n)
    return triton.Config(
        {"BLOCK_M": block_m, "BLOCK_N": block_n, "REL_WIDTH": width},
        num_warps=warps,
        num_stages=stages,
    )


_FWD_CONFIGS = [_config(128, 64, 8, 3), _config(128, 64, 4, 3), _config(64, 64, 4, 3),
                _config(128, 32, 4, 3), _config(64, 32, 4, 4)]  # fmt: skip
_BWD_CONFIGS = [_config(64, 64, 4, 3), _config(32, 64, 4, 3), _config(64, 128, 8, 2),
                _config(128, 64, 8, 2), _config(32, 32, 4, 2)]  # fmt: skip
_INTERPRETER_CONFIG = _config(32, 32, 4, 1)
_TUNE_KEY = ["tune_len_q", "tune_len_k", "BLOCK_D", "BLOCK_DV", "IS_CAUSAL", "HAS_MASK", "HAS_BIAS",
             "HAS_REL", "IS_VARLEN"]  # fmt: skip


@triton.jit
def _sequence(cu_q_ptr, cu_k_ptr, num_heads, dense_len_q, dense_len_k, IS_VARLEN: tl.constexpr):
    """The (batch, head) of grid axis 0 (sequence · heads + head), and the first row and number of
    rows of this sequence's queries and keys."""
    pid = tl.program_id(0)
    head = (pid % num_heads).to(tl.int64)
    if IS_VARLEN:
        segment = pid // num_heads
        batch = 0
        q_start = tl.load(cu_q_ptr + segment).to(tl.int64)
        len_q = tl.load(cu_q_ptr + segment + 1) - q_start
        k_start = tl.load(cu_k_ptr + segment).to(tl.int64)
        len_k = tl.load(cu_k_ptr + segment + 1) - k_start
    else:
        batch = (pid // num_heads).to(tl.int64)
        q_start = 0
        len_q = dense_len_q
        k_start = 0
        len_k = dense_len_k
    return batch, head, q_start, len_q, k_start, len_k


@triton.jit
def _row_offset(batch, head, row, strides):
    """Element offset of ``row`` of (batch, head) in a tensor with ``strides`` ``(b, h, row, …)``."""
    return batch * strides[0] + head * strides[1] + row * strides[2]


@triton.jit
def _plane_tile(ptr, strides, batch, head, offs_m, offs_n, valid):
    """Tile of a ``[B, H, Lq, Lk]`` mask or bias, read through its (broadcast) ``strides`` where
    ``valid``, zeros elsewhere."""
    plane = ptr + _row_offset(batch, head, 0, strides)
    return tl.load(
        plane + offs_m[:, None] * strides[2] + offs_n[None, :] * strides[3], mask=valid, other=0
    )


@triton.jit
def _query_block(
    q_ptr, stride_q, cu_q_ptr, cu_k_ptr, num_heads, dense_len_q, dense_len_k, head_dim,
    IS_VARLEN: tl.constexpr, IS_CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """Prologue of the programs that own a query block (grid axis 1): the sequence (see
    :func:`_sequence`), the block's first row ``m0`` and its queries ``[BLOCK_M, BLOCK_D]``, and the end
    ``hi`` of the keys it visits — 0 when the block lies past its sequence's end (varlen grids cover
    the longest segment), so the key loop is skipped and every store is masked off."""
    batch, head, q_start, len_q, k_start, len_k = _sequence(
        cu_q_ptr, cu_k_ptr, num_heads, dense_len_q, dense_len_k, IS_VARLEN
    )
    m0 = tl.program_id(1) * BLOCK_M
    q_base = q_ptr + _row_offset(batch, head, q_start, stride_q)
    q = load_rows(q_base, m0 + tl.arange(0, BLOCK_M), stride_q[2], len_q, head_dim, BLOCK_D)
    hi = len_k
    if IS_CAUSAL:  # blocks right of the diagonal are all hidden: never visit them
        hi = tl.minimum(len_k, m0 + BLOCK_M + len_k - len_q)
    hi = tl.where(m0 < len_q, hi, 0)
    return batch, head, q_start, len_q, k_start, len_k, m0, q, hi


@triton.jit
def _tile_logits(
    q, k, m0, n0, batch, head, len_q, len_k, head_dim, scale_log2, mask_ptr, stride_mask,
    bias_ptr, stride_bias, e_ptr, stride_e, max_rel, rel_upper,
    IS_CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_REL: tl.constexpr,
    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    REL_WIDTH: tl.constexpr,
):  # fmt: skip
    """Base-2 logits ``[BLOCK_M, BLOCK_N]`` of queries ``m0…`` against keys ``n0…``: ``(q kᵀ +
    q_i·E[clip(j − i)])·scale·log2 e + bias·log2 e``, −inf wherever a key may not be seen.

    Also returns the rows of E the tile used and their row numbers (zeros without the relative term),
    from which the dQ kernel forms dE. E rows are clipped to ``[−K, rel_upper]`` (Shaw et al.'s clip).
    """
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_n = n0 + tl.arange(0, BLOCK_N)
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
    if HAS_REL:
        dist0 = n0 - m0 - (BLOCK_M - 1)  # the tile's smallest distance j − i
        e_idx = (
            tl.minimum(tl.maximum(dist0 + tl.arange(0, REL_WIDTH), -max_rel), rel_upper) + max_rel
        )
        offs_d = tl.arange(0, BLOCK_D)
        e_ptrs = e_ptr + head * stride_e[0] + e_idx[:, None] * stride_e[1] + offs_d[None, :]
        e_rows = tl.load(e_ptrs, mask=(offs_d < head_dim)[None, :], other=0.0)
        qe = tl.dot(q, tl.trans(e_rows), input_precision=PRECISION)
        s += tl.gather(qe, offs_n[None, :] - offs_m[:, None] - dist0, 1)
    else:
        e_rows = tl.zeros([REL_WIDTH, BLOCK_D], q.dtype)
        e_idx = tl.zeros([REL_WIDTH], tl.int32)
    valid = (offs_m[:, None] < len_q) & (offs_n[None, :] < len_k)
    if IS_CAUSAL:
        valid = valid & (offs_n[None, :] <= offs_m[:, None] + (len_k - len_q))
    if HAS_MASK:
        valid = valid & (
            _plane_tile(mask_ptr, stride_mask, batch, head, offs_m, offs_n, valid) != 0
        )
    s = s * scale_log2
    if HAS_BIAS:
        bias = _plane_tile(bias_ptr, stride_bias, batch, head, offs_m, offs_n, valid)
        s += bias.to(tl.float32) * LOG2E
    return tl.where(valid, s, float("-inf")), e_rows, e_idx


@autotune(_FWD_CONFIGS, _INTERPRETER_CONFIG, key=_TUNE_KEY)
@triton.jit
def _flash_fwd(
    q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, mask_ptr, bias_ptr, e_ptr, cu_q_ptr, cu_k_ptr,
    stride_q, stride_k, stride_v, stride_o, stride_lse, stride_mask, stride_bias, stride_e,
    num_heads, dense_len_q, dense_len_k, head_dim, head_dim_v, scale_log2, max_rel, rel_upper,
    tune_len_q, tune_len_k,
    IS_VARLEN: tl.constexpr, IS_CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_REL: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, REL_WIDTH: tl.constexpr,
):  # fmt: skip
    """Output and log-sum-exp of one query block."""
    batch, head, q_start, len_q, k_start, len_k, m0, q, hi = _query_block(
        q_ptr, stride_q, cu_q_ptr, cu_k_ptr, num_heads, dense_len_q, dense_len_k, head_dim,
        IS_VARLEN, IS_CAUSAL, BLOCK_M, BLOCK_D,
    )  # fmt: skip
    k_base = k_ptr + _row_offset(batch, head, k_start, stride_k)
    v_base = v_ptr + _row_offset(batch, head, k_start, stride_v)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    for n0 in range(0, hi, BLOCK_N):
        keys = n0 + tl.arange(0, BLOCK_N)
        k = load_rows(k_base, keys, stride_k[2], len_k, head_dim, BLOCK_D)
        s, _, _ = _tile_logits(
            q, k, m0, n0, batch, head, len_q, len_k, head_dim, scale_log2, mask_ptr, stride_mask,
            bias_ptr, stride_bias, e_ptr, stride_e, max_rel, rel_upper,
            IS_CAUSAL, HAS_MASK, HAS_BIAS, HAS_REL, PRECISION, BLOCK_M, BLOCK_N, BLOCK_D, REL_WIDTH,
        )  # fmt: skip
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # A row that has seen only hidden keys keeps m = −inf; shift by 0 there to avoid inf − inf.
        m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_shift)
        p = tl.exp2(s - m_shift[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = load_rows(v_base, keys, stride_v[2], len_k, head_dim_v, BLOCK_DV)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new

    seen = l_i > 0.0
    l_safe = tl.where(seen, l_i, 1.0)
    rows = m0 + tl.arange(0, BLOCK_M)
    o_base = o_ptr + _row_offset(batch, head, q_start, stride_o)
    store_rows(o_base, rows, stride_o[2], len_q, head_dim_v, BLOCK_DV, acc / l_safe[:, None])
    # +inf makes every recomputed probability exp2(s − lse) of a keyless row exactly 0 in the backward.
    lse = tl.where(seen, m_i + tl.log2(l_safe), float("inf"))
    tl.store(lse_ptr + _row_offset(batch, head, q_start, stride_lse) + rows, lse, mask=rows < len_q)


@autotune(_BWD_CONFIGS, _INTERPRETER_CONFIG, key=_TUNE_KEY)
@triton.jit
def _flash_bwd_dkdv(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr, dbias_ptr,
    mask_ptr, bias_ptr, e_ptr, cu_q_ptr, cu_k_ptr,
    stride_q, stride_k, stride_v, stride_o, stride_lse, stride_mask, stride_bias, stride_e,
    stride_dbias, num_heads, dense_len_q, dense_len_k, head_dim, head_dim_v, scale, scale_log2,
    max_rel, rel_upper, tune_len_q, tune_len_k,
    IS_VARLEN: tl.constexpr, IS_CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_REL: tl.constexpr, BIAS_GRAD: tl.constexpr,
    PRECISION: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, REL_WIDTH: tl.constexpr,
):  # fmt: skip
    """dK, dV of one key block (and dBias = dS of every tile it sees); dO shares O's strides, dK and
    dV those of K and V, delta those of the log-sum-exp."""
    batch, head, q_start, len_q, k_start, len_k = _sequence(
        cu_q_ptr, cu_k_ptr, num_heads, dense_len_q, dense_len_k, IS_VARLEN
    )
    n0 = tl.program_id(1) * BLOCK_N
    keys = n0 + tl.arange(0, BLOCK_N)
    k_offset = _row_offset(batch, head, k_start, stride_k)
    v_offset = _row_offset(batch, head, k_start, stride_v)
    k = load_rows(k_ptr + k_offset, keys, stride_k[2], len_k, head_dim, BLOCK_D)
    v = load_rows(v_ptr + v_offset, keys, stride_v[2], len_k, head_dim_v, BLOCK_DV)
    q_base = q_ptr + _row_offset(batch, head, q_start, stride_q)
    do_base = do_ptr + _row_offset(batch, head, q_start, stride_o)
    row_offset = _row_offset(batch, head, q_start, stride_lse)
    dbias_base = dbias_ptr + _row_offset(batch, head, 0, stride_dbias)

    lo = 0
    if IS_CAUSAL:  # query i sees key n0 only if i ≥ n0 − (Lk − Lq): skip the blocks above
        lo = tl.maximum(n0 - (len_k - len_q), 0) // BLOCK_M * BLOCK_M
    hi = tl.where(n0 < len_k, len_q, 0)  # a block past its sequence's end visits nothing
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
    for m0 in range(lo, hi, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        q = load_rows(q_base, rows, stride_q[2], len_q, head_dim, BLOCK_D)
        do = load_rows(do_base, rows, stride_o[2], len_q, head_dim_v, BLOCK_DV)
        lse = tl.load(lse_ptr + row_offset + rows, mask=rows < len_q, other=0.0)
        delta = tl.load(delta_ptr + row_offset + rows, mask=rows < len_q, other=0.0)
        s, _, _ = _tile_logits(
            q, k, m0, n0, batch, head, len_q, len_k, head_dim, scale_log2, mask_ptr, stride_mask,
            bias_ptr, stride_bias, e_ptr, stride_e, max_rel, rel_upper,
            IS_CAUSAL, HAS_MASK, HAS_BIAS, HAS_REL, PRECISION, BLOCK_M, BLOCK_N, BLOCK_D, REL_WIDTH,
        )  # fmt: skip
        p = tl.exp2(s - lse[:, None])
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION)
        ds = p * (tl.dot(do, tl.trans(v), input_precision=PRECISION) - delta[:, None])
        if BIAS_GRAD:  # ds: gradient of the loss w.r.t. the (natural-log) logits
            store_rows(dbias_base + n0, rows, stride_dbias[2], len_q, len_k - n0, BLOCK_N, ds)
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    store_rows(dk_ptr + k_offset, keys, stride_k[2], len_k, head_dim, BLOCK_D, dk * scale)
    store_rows(dv_ptr + v_offset, keys, stride_v[2], len_k, head_dim_v, BLOCK_DV, dv)


@autotune(_BWD_CONFIGS, _INTERPRETER_CONFIG, key=_TUNE_KEY, reset_to_zero=["de_ptr"])
@triton.jit
def _flash_bwd_dq(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr, de_ptr,
    mask_ptr, bias_ptr, e_ptr, cu_q_ptr, cu_k_ptr,
    stride_q, stride_k, stride_v, stride_o, stride_lse, stride_mask, stride_bias, stride_e,
    stride_de, num_heads, dense_len_q, dense_len_k, head_dim, head_dim_v, scale, scale_log2,
    max_rel, rel_upper, tune_len_q, tune_len_k,
    IS_VARLEN: tl.constexpr, IS_CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_REL: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, REL_WIDTH: tl.constexpr,
):  # fmt: skip
    """dQ of one query block; with the relative term also dE, added atomically (tiles of every program
    share distances, and clipping folds many distances onto the edge rows)."""
    batch, head, q_start, len_q, k_start, len_k, m0, q, hi = _query_block(
        q_ptr, stride_q, cu_q_ptr, cu_k_ptr, num_heads, dense_len_q, dense_len_k, head_dim,
        IS_VARLEN, IS_CAUSAL, BLOCK_M, BLOCK_D,
    )  # fmt: skip
    rows = m0 + tl.arange(0, BLOCK_M)
    do_base = do_ptr + _row_offset(batch, head, q_start, stride_o)
    do = load_rows(do_base, rows, stride_o[2], len_q, head_dim_v, BLOCK_DV)
    row_offset = _row_offset(batch, head, q_start, stride_lse)
    lse = tl.load(lse_ptr + row_offset + rows, mask=rows < len_q, other=0.0)
    delta = tl.load(delta_ptr + row_offset + rows, mask=rows < len_q, other=0.0)
    k_base = k_ptr + _row_offset(batch, head, k_start, stride_k)
    v_base = v_ptr + _row_offset(batch, head, k_start, stride_v)
    offs_d = tl.arange(0, BLOCK_D)
    de_base = de_ptr + head * stride_de[0] + offs_d[None, :]

    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for n0 in range(0, hi, BLOCK_N):
        keys = n0 + tl.arange(0, BLOCK_N)
        k = load_rows(k_base, keys, stride_k[2], len_k, head_dim, BLOCK_D)
        v = load_rows(v_base, keys, stride_v[2], len_k, head_dim_v, BLOCK_DV)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        s, e_rows, e_idx = _tile_logits(
            q, k, m0, n0, batch, head, len_q, len_k, head_dim, scale_log2, mask_ptr, stride_mask,
            bias_ptr, stride_bias, e_ptr, stride_e, max_rel, rel_upper,
            IS_CAUSAL, HAS_MASK, HAS_BIAS, HAS_REL, PRECISION, BLOCK_M, BLOCK_N, BLOCK_D, REL_WIDTH,
        )  # fmt: skip
        ds = tl.exp2(s - lse[:, None]) * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
        if HAS_REL:
            # Un-skew dS into distance columns: dQE[i, w] = dS[i, j] with j − i = dist0 + w.
            key_col = (
                tl.arange(0, BLOCK_M)[:, None] + tl.arange(0, REL_WIDTH)[None, :] - (BLOCK_M - 1)
            )
            hit = (key_col >= 0) & (key_col < BLOCK_N)
            dqe = tl.where(hit, tl.gather(ds, tl.where(hit, key_col, 0), 1), 0.0).to(q.dtype)
            dq += tl.dot(dqe, e_rows, input_precision=PRECISION)
            de = tl.dot(tl.trans(dqe), q, input_precision=PRECISION) * scale
            tl.atomic_add(
                de_base + e_idx[:, None] * stride_de[1], de, mask=(offs_d < head_dim)[None, :]
            )
    store_rows(dq_ptr + _row_offset(batch, head, q_start, stride_q), rows, stride_q[2], len_q,
               head_dim, BLOCK_D, dq * scale)  # fmt: skip


def _strides(x: Tensor | None, rank: int) -> tuple[int, ...]:
    """``x``'s strides, or zeros for an absent optional input (its flag is off: never read)."""
    return tuple(x.stride()) if x is not None else (0,) * rank


def _no_buffer(like: Tensor) -> Tensor:
    """Stand-in for an absent atomic target: autotune zeroes it between trials, so it must not alias
    an input (an empty tensor makes that a no-op)."""
    return torch.empty(0, dtype=torch.float32, device=like.device)


@dataclass(frozen=True)
class _Launch:
    """What the kernels need besides the differentiable inputs (q, k, v, bias, rel_emb).

    ``mask`` is the uint8 view broadcast to ``[B, H, Lq, Lk]``; ``cu_q``/``cu_k`` (int32 ``[N + 1]``)
    switch to varlen mode; ``num_seqs`` (B, or N segments) and the longest query and key sequence size
    the grids.
    """

    causal: bool
    scale: float
    num_seqs: int
    max_len_q: int
    max_len_k: int
    mask: Tensor | None = None
    cu_q: Tensor | None = None
    cu_k: Tensor | None = None

    @classmethod
    def packed(
        cls, cu_seqlens: Tensor, cu_seqlens_k: Tensor | None, causal: bool, scale: float
    ) -> _Launch:
        """A varlen launch: int32 offsets, and the longest segments (read on the host)."""
        cu_q = cu_seqlens.to(torch.int32)
        cu_k = cu_q if cu_seqlens_k is None else cu_seqlens_k.to(torch.int32)
        num_seqs = cu_q.numel() - 1
        longest_q = int(cu_q.diff().max()) if num_seqs > 0 else 0
        longest_k = int(cu_k.diff().max()) if num_seqs > 0 else 0
        return cls(causal, scale, num_seqs, longest_q, longest_k, cu_q=cu_q, cu_k=cu_k)

    def grid(self, heads: int, longest: int, block: str):
        """Sequence·head on axis 0 (no 65 535 limit for many segments), blocks of the ``longest``
        sequence (``BLOCK_M`` or ``BLOCK_N`` long) on axis 1."""
        return lambda meta: (self.num_seqs * heads, triton.cdiv(longest, meta[block]))

    def kernel_arguments(
        self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, rel_emb: Tensor | None
    ) -> dict[str, Any]:
        """The arguments, by name, that every kernel of the family takes; an absent optional input
        gets ``q`` as its pointer (never read: its flag is off)."""
        mask, cu_q, cu_k, causal = self.mask, self.cu_q, self.cu_k, self.causal
        rows = 0 if rel_emb is None else rel_emb.shape[1]
        max_rel = rows - 1 if causal else (rows - 1) // 2  # R = K + 1 (−K…0) or 2K + 1 (−K…K)
        return {
            "q_ptr": q, "k_ptr": k, "v_ptr": v,
            "mask_ptr": q if mask is None else mask, "bias_ptr": q if bias is None else bias,
            "e_ptr": q if rel_emb is None else rel_emb,
            "cu_q_ptr": q if cu_q is None else cu_q, "cu_k_ptr": q if cu_k is None else cu_k,
            "stride_q": q.stride(), "stride_k": k.stride(), "stride_v": v.stride(),
            "stride_mask": _strides(mask, 4), "stride_bias": _strides(bias, 4),
            "stride_e": _strides(rel_emb, 3),
            "num_heads": q.shape[1], "dense_len_q": q.shape[2], "dense_len_k": k.shape[2],
            "head_dim": q.shape[3], "head_dim_v": v.shape[3], "scale_log2": self.scale * LOG2E_VALUE,
            "max_rel": max_rel, "rel_upper": 0 if causal else max_rel,
            # Autotune keys: powers of 2, so varlen batches with new longest segments reuse a config.
            "tune_len_q": triton.next_power_of_2(max(self.max_len_q, 1)),
            "tune_len_k": triton.next_power_of_2(max(self.max_len_k, 1)),
            "IS_VARLEN": cu_q is not None, "IS_CAUSAL": causal, "HAS_MASK": mask is not None,
            "HAS_BIAS": bias is not None, "HAS_REL": rel_emb is not None,
            "PRECISION": _common.dot_precision(q.dtype),
            "BLOCK_D": _common.block_size(q.shape[3]), "BLOCK_DV": _common.block_size(v.shape[3]),
        }  # fmt: skip


class _FlashAttention(torch.autograd.Function):
    """Autograd glue for the kernels above."""

    @staticmethod
    def forward(ctx, launch: _Launch, *inputs: Tensor | None) -> Tensor:
        """``inputs`` = (q, k, v, bias, rel_emb), the tensors autograd differentiates."""
        q, k, v, bias, rel_emb = inputs
        batch, heads, len_q, _ = q.shape
        if launch.cu_q is None:
            out = _common.empty((batch, heads, len_q, v.shape[-1]), q.dtype, q.device)
        else:  # packed [T, H, Dv] memory, seen as [1, H, T, Dv] like q
            out = _common.empty((len_q, heads, v.shape[-1]), q.dtype, q.device)
            out = out.unsqueeze(0).transpose(1, 2)
        lse = _common.empty((batch, heads, len_q), torch.float32, q.device)
        if out.numel() > 0:
            _flash_fwd[launch.grid(heads, launch.max_len_q, "BLOCK_M")](
                o_ptr=out, lse_ptr=lse, stride_o=out.stride(), stride_lse=lse.stride(),
                **launch.kernel_arguments(q, k, v, bias, rel_emb),
            )  # fmt: skip
        ctx.save_for_backward(q, k, v, out, lse, bias, rel_emb)
        ctx.launch = launch
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, k, v, out, lse, bias, rel_emb = ctx.saved_tensors
        launch: _Launch = ctx.launch
        arguments = launch.kernel_arguments(q, k, v, bias, rel_emb)
        grad_out = _common.dense_rows(grad_out)
        rows = {
            "do_ptr": grad_out, "lse_ptr": lse, "stride_o": grad_out.stride(),
            "stride_lse": lse.stride(), "scale": launch.scale,
            # [B, H, L] fp32 like lse, whose strides the kernels use for it.
            "delta_ptr": (grad_out.float() * out.float()).sum(-1).contiguous(),
        }  # fmt: skip
        dq, dk, dv = (_common.empty(x.shape, x.dtype, x.device, x.stride()) for x in (q, k, v))
        bias_grad = bias is not None and ctx.needs_input_grad[4]
        # Tiles a causal program skips must read as zero gradient, so dBias starts from zeros.
        dbias = torch.zeros(bias.shape, device=q.device) if bias_grad else None
        de = torch.zeros(rel_emb.shape, device=q.device) if rel_emb is not None else None
        heads = q.shape[1]
        if k.numel() > 0 and q.shape[2] > 0:
            _flash_bwd_dkdv[launch.grid(heads, launch.max_len_k, "BLOCK_N")](
                dk_ptr=dk, dv_ptr=dv, dbias_ptr=q if dbias is None else dbias,
                stride_dbias=_strides(dbias, 4), BIAS_GRAD=bias_grad, **rows, **arguments,
            )  # fmt: skip
        else:
            dk.zero_()
            dv.zero_()
        if q.numel() > 0:
            _flash_bwd_dq[launch.grid(heads, launch.max_len_q, "BLOCK_M")](
                dq_ptr=dq, de_ptr=_no_buffer(q) if de is None else de,
                stride_de=_strides(de, 3), **rows, **arguments,
            )  # fmt: skip
        dbias_out = dbias.to(bias.dtype) if dbias is not None else None
        de_out = de.to(rel_emb.dtype) if de is not None and ctx.needs_input_grad[5] else None
        return None, dq, dk, dv, dbias_out, de_out


def flash_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scale: float,
    causal: bool = False,
    mask: Tensor | None = None,
    bias: Tensor | None = None,
    rel_emb: Tensor | None = None,
    cu_seqlens: Tensor | None = None,
    cu_seqlens_k: Tensor | None = None,
) -> Tensor:
    """``softmax((q kᵀ + q_i·E[clip(j − i)])·scale + bias) v`` on validated inputs; rows that may see
    no key give 0. The entry point of the three ops the family serves, which pass their arguments by
    name (``core.ops.backend``):

    * dense: ``q [B, H, Lq, D]``, ``k [B, H, Lk, D]``, ``v [B, H, Lk, Dv]`` → ``[B, H, Lq, Dv]``.
      ``mask`` (bool, True = may attend) and ``bias`` broadcast to ``[B, H, Lq, Lk]`` and are read
      through their broadcast strides, never materialised; ``causal`` hides key j from query i unless
      ``j ≤ i + Lk − Lq``. The bias gradient is a dense fp32 ``[B, H, Lq, Lk]`` buffer (summed over the
      broadcast dims), allocated only when asked for.
    * relative (Lq = Lk): ``rel_emb`` ``[H, R, D]`` holds distance r − K in row r: R = K + 1 (−K…0)
      when ``causal``, else 2K + 1 (−K…K); farther distances use the edge row. Differentiable.
    * varlen: with int ``cu_seqlens [N+1]`` (and ``cu_seqlens_k`` for paired cross-attention), packed
      ``q [T, H, D]``, ``k [Tk, H, D]``, ``v [Tk, H, Dv]`` → ``[T, H, Dv]``, attention within each
      segment; ``causal`` is top-left within a segment (j ≤ i). Empty segments are allowed. The longest
      segment sizes the grid, so its length is read on the host (one device→host copy).
    """
    if cu_seqlens is not None:
        launch = _Launch.packed(cu_seqlens, cu_seqlens_k, causal, scale)
        # [T, H, D] → the [1, H, T, D] view the kernels index (no copy when rows tile memory).
        q, k, v = (_common.dense_rows(x).unsqueeze(0).transpose(1, 2) for x in (q, k, v))
        return _FlashAttention.apply(launch, q, k, v, None, None).transpose(1, 2).squeeze(0)
    q, k, v = (_common.dense_rows(x) for x in (q, k, v))
    target = (*q.shape[:-1], k.shape[2])
    if mask is not None:  # uint8 view: bool pointers are not portable across Triton versions
        mask = mask.view(torch.uint8).expand(target)
    if bias is not None:
        bias = bias.expand(target)
    if rel_emb is not None and rel_emb.stride(-1) != 1:
        rel_emb = rel_emb.contiguous()
    launch = _Launch(causal, scale, q.shape[0], q.shape[2], k.shape[2], mask=mask)
    return _FlashAttention.apply(launch, q, k, v, bias, rel_emb)
