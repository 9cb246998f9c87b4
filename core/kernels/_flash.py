"""One tiled softmax-attention kernel family (FlashAttention-2, Dao 2023) behind three ops.

Dense attention (mask, bias, causal), Music Transformer relative attention and varlen attention differ
only in how a tile's logits are formed and where a sequence starts, so they share these kernels and
select features with ``tl.constexpr`` flags (each combination compiles to its own specialised kernel):

* forward: one program per (batch·head, query block); keys are streamed block by block with the online
  softmax, and the base-2 log-sum-exp of every row is kept for the backward;
* backward: ``delta = rowsum(dO ∘ O)`` in PyTorch, then one program per key block accumulates dK, dV
  (and writes dBias) and one program per query block accumulates dQ (and adds dE with atomics), both
  recomputing the probabilities from the log-sum-exp instead of storing ``[L, L]``.

Tensors are seen as ``[B, H, L, D]`` with unit stride on D. Varlen inputs ``[T, H, D]`` are viewed as
``[1, H, T, D]`` with "batch" = segment: a program reads its segment's offsets from ``cu_seqlens``.
"""

# Triton convention: compile-time meta-parameters (tl.constexpr) are UPPER_CASE.
# ruff: noqa: N803

from __future__ import annotations

import torch
import triton
import triton.language as tl

from core.kernels import _common
from core.kernels._autotune import autotune

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
def _segment(cu_ptr, index, dense_len, IS_VARLEN: tl.constexpr):
    """(start row, length) of sequence ``index``: read from ``cu_seqlens`` or the dense length."""
    if IS_VARLEN:
        start = tl.load(cu_ptr + index)
        length = tl.load(cu_ptr + index + 1) - start
    else:
        start = 0
        length = dense_len
    return start, length


@triton.jit
def _rel_rows(e_base, s_er, dist0, offs_d, head_dim, max_rel, rel_upper, REL_WIDTH: tl.constexpr):
    """Rows of E for distances ``dist0 … dist0 + REL_WIDTH − 1`` clipped to ``[−K, rel_upper]``:
    ``[REL_WIDTH, BLOCK_D]`` and their row numbers in E."""
    dist = dist0 + tl.arange(0, REL_WIDTH)
    rows = tl.minimum(tl.maximum(dist, -max_rel), rel_upper) + max_rel
    e_rows = tl.load(
        e_base + rows[:, None] * s_er + offs_d[None, :],
        mask=(offs_d < head_dim)[None, :],
        other=0.0,
    )
    return e_rows, rows


@triton.jit
def _logits(s, offs_m, offs_n, len_q, len_k, scale_log2, mask_base, s_mi, s_mj, bias_base, s_bi,
            s_bj, IS_CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr, HAS_BIAS: tl.constexpr):  # fmt: skip
    """Raw scores ``[BLOCK_M, BLOCK_N]`` → base-2 logits, −inf wherever a key may not be seen."""
    valid = (offs_m[:, None] < len_q) & (offs_n[None, :] < len_k)
    if IS_CAUSAL:
        valid = valid & (offs_n[None, :] <= offs_m[:, None] + (len_k - len_q))
    if HAS_MASK:
        allowed = tl.load(
            mask_base + offs_m[:, None] * s_mi + offs_n[None, :] * s_mj, mask=valid, other=0
        )
        valid = valid & (allowed != 0)
    s = s * scale_log2
    if HAS_BIAS:
        bias = tl.load(
            bias_base + offs_m[:, None] * s_bi + offs_n[None, :] * s_bj, mask=valid, other=0.0
        )
        s += bias.to(tl.float32) * LOG2E
    return tl.where(valid, s, float("-inf"))


@autotune(_FWD_CONFIGS, _INTERPRETER_CONFIG, key=_TUNE_KEY)
@triton.jit
def _flash_fwd(
    q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, mask_ptr, bias_ptr, e_ptr, cu_q_ptr, cu_k_ptr,
    s_qb, s_qh, s_ql, s_kb, s_kh, s_kl, s_vb, s_vh, s_vl, s_ob, s_oh, s_ol, s_lb, s_lh,
    s_mb, s_mh, s_mi, s_mj, s_bb, s_bh, s_bi, s_bj, s_eh, s_er,
    num_heads, dense_len_q, dense_len_k, head_dim, head_dim_v, scale_log2, max_rel, rel_upper,
    tune_len_q, tune_len_k,
    IS_VARLEN: tl.constexpr, IS_CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_REL: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, REL_WIDTH: tl.constexpr,
):  # fmt: skip
    pid_bh = tl.program_id(0)
    batch = (pid_bh // num_heads).to(tl.int64)
    head = (pid_bh % num_heads).to(tl.int64)
    q_start, len_q = _segment(cu_q_ptr, batch, dense_len_q, IS_VARLEN)
    k_start, len_k = _segment(cu_k_ptr, batch, dense_len_k, IS_VARLEN)
    m0 = tl.program_id(1) * BLOCK_M
    if m0 >= len_q:
        return
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    row_ok = offs_m < len_q
    d_ok = offs_d < head_dim
    dv_ok = offs_dv < head_dim_v
    q = tl.load(
        q_ptr + batch * s_qb + head * s_qh + (q_start + offs_m)[:, None] * s_ql + offs_d[None, :],
        mask=row_ok[:, None] & d_ok[None, :],
        other=0.0,
    )
    k_base = k_ptr + batch * s_kb + head * s_kh + k_start * s_kl
    v_base = v_ptr + batch * s_vb + head * s_vh + k_start * s_vl
    mask_base = mask_ptr + batch * s_mb + head * s_mh
    bias_base = bias_ptr + batch * s_bb + head * s_bh
    e_base = e_ptr + head * s_eh

    hi = len_k
    if IS_CAUSAL:  # blocks right of the diagonal are all hidden: never visit them
        hi = tl.minimum(len_k, m0 + BLOCK_M + len_k - len_q)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    for n0 in range(0, hi, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        col_ok = offs_n < len_k
        k = tl.load(
            k_base + offs_n[:, None] * s_kl + offs_d[None, :],
            mask=col_ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        if HAS_REL:
            dist0 = n0 - m0 - (BLOCK_M - 1)
            e_rows, _ = _rel_rows(
                e_base, s_er, dist0, offs_d, head_dim, max_rel, rel_upper, REL_WIDTH
            )
            qe = tl.dot(q, tl.trans(e_rows), input_precision=PRECISION)
            s += tl.gather(qe, offs_n[None, :] - offs_m[:, None] - dist0, 1)
        s = _logits(s, offs_m, offs_n, len_q, len_k, scale_log2, mask_base, s_mi, s_mj, bias_base,
                    s_bi, s_bj, IS_CAUSAL, HAS_MASK, HAS_BIAS)  # fmt: skip
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # A row that has seen only hidden keys keeps m = −inf; shift by 0 there to avoid inf − inf.
        m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_shift)
        p = tl.exp2(s - m_shift[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(
            v_base + offs_n[:, None] * s_vl + offs_dv[None, :],
            mask=col_ok[:, None] & dv_ok[None, :],
            other=0.0,
        )
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new

    seen = l_i > 0.0
    l_safe = tl.where(seen, l_i, 1.0)
    out = acc / l_safe[:, None]
    # +inf makes every recomputed probability exp2(s − lse) of a keyless row exactly 0 in the backward.
    lse = tl.where(seen, m_i + tl.log2(l_safe), float("inf"))
    tl.store(
        o_ptr + batch * s_ob + head * s_oh + (q_start + offs_m)[:, None] * s_ol + offs_dv[None, :],
        out.to(o_ptr.dtype.element_ty),
        mask=row_ok[:, None] & dv_ok[None, :],
    )
    tl.store(lse_ptr + batch * s_lb + head * s_lh + q_start + offs_m, lse, mask=row_ok)


@autotune(_BWD_CONFIGS, _INTERPRETER_CONFIG, key=_TUNE_KEY)
@triton.jit
def _flash_bwd_dkdv(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr, dbias_ptr,
    mask_ptr, bias_ptr, e_ptr, cu_q_ptr, cu_k_ptr,
    s_qb, s_qh, s_ql, s_kb, s_kh, s_kl, s_vb, s_vh, s_vl, s_ob, s_oh, s_ol, s_lb, s_lh,
    s_mb, s_mh, s_mi, s_mj, s_bb, s_bh, s_bi, s_bj, s_eh, s_er, s_gb, s_gh, s_gi,
    num_heads, dense_len_q, dense_len_k, head_dim, head_dim_v, scale, scale_log2, max_rel,
    rel_upper, tune_len_q, tune_len_k,
    IS_VARLEN: tl.constexpr, IS_CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_REL: tl.constexpr, BIAS_GRAD: tl.constexpr,
    PRECISION: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, REL_WIDTH: tl.constexpr,
):  # fmt: skip
    """dK, dV for one key block (and dBias = dS for every tile it sees); dO shares O's strides."""
    pid_bh = tl.program_id(0)
    batch = (pid_bh // num_heads).to(tl.int64)
    head = (pid_bh % num_heads).to(tl.int64)
    q_start, len_q = _segment(cu_q_ptr, batch, dense_len_q, IS_VARLEN)
    k_start, len_k = _segment(cu_k_ptr, batch, dense_len_k, IS_VARLEN)
    n0 = tl.program_id(1) * BLOCK_N
    if n0 >= len_k:
        return
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    col_ok = offs_n < len_k
    d_ok = offs_d < head_dim
    dv_ok = offs_dv < head_dim_v
    k_ptrs = (
        k_ptr + batch * s_kb + head * s_kh + (k_start + offs_n)[:, None] * s_kl + offs_d[None, :]
    )
    v_ptrs = (
        v_ptr + batch * s_vb + head * s_vh + (k_start + offs_n)[:, None] * s_vl + offs_dv[None, :]
    )
    k = tl.load(k_ptrs, mask=col_ok[:, None] & d_ok[None, :], other=0.0)
    v = tl.load(v_ptrs, mask=col_ok[:, None] & dv_ok[None, :], other=0.0)
    q_base = q_ptr + batch * s_qb + head * s_qh + q_start * s_ql
    do_base = do_ptr + batch * s_ob + head * s_oh + q_start * s_ol
    row_base = batch * s_lb + head * s_lh + q_start
    mask_base = mask_ptr + batch * s_mb + head * s_mh
    bias_base = bias_ptr + batch * s_bb + head * s_bh
    e_base = e_ptr + head * s_eh

    lo = 0
    if IS_CAUSAL:  # query i sees key n0 only if i ≥ n0 − (Lk − Lq): skip the blocks above
        lo = tl.maximum(n0 - (len_k - len_q), 0) // BLOCK_M * BLOCK_M
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
    for m0 in range(lo, len_q, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        row_ok = offs_m < len_q
        q = tl.load(
            q_base + offs_m[:, None] * s_ql + offs_d[None, :],
            mask=row_ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        do = tl.load(
            do_base + offs_m[:, None] * s_ol + offs_dv[None, :],
            mask=row_ok[:, None] & dv_ok[None, :],
            other=0.0,
        )
        lse = tl.load(lse_ptr + row_base + offs_m, mask=row_ok, other=0.0)
        delta = tl.load(delta_ptr + row_base + offs_m, mask=row_ok, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        if HAS_REL:
            dist0 = n0 - m0 - (BLOCK_M - 1)
            e_rows, _ = _rel_rows(
                e_base, s_er, dist0, offs_d, head_dim, max_rel, rel_upper, REL_WIDTH
            )
            qe = tl.dot(q, tl.trans(e_rows), input_precision=PRECISION)
            s += tl.gather(qe, offs_n[None, :] - offs_m[:, None] - dist0, 1)
        s = _logits(s, offs_m, offs_n, len_q, len_k, scale_log2, mask_base, s_mi, s_mj, bias_base,
                    s_bi, s_bj, IS_CAUSAL, HAS_MASK, HAS_BIAS)  # fmt: skip
        p = tl.exp2(s - lse[:, None])
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])  # gradient of the loss w.r.t. the (natural-log) logits
        if BIAS_GRAD:
            tl.store(
                dbias_ptr + batch * s_gb + head * s_gh + offs_m[:, None] * s_gi + offs_n[None, :],
                ds,
                mask=row_ok[:, None] & col_ok[None, :],
            )
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    tl.store(
        dk_ptr + batch * s_kb + head * s_kh + (k_start + offs_n)[:, None] * s_kl + offs_d[None, :],
        (dk * scale).to(dk_ptr.dtype.element_ty),
        mask=col_ok[:, None] & d_ok[None, :],
    )
    tl.store(
        dv_ptr + batch * s_vb + head * s_vh + (k_start + offs_n)[:, None] * s_vl + offs_dv[None, :],
        dv.to(dv_ptr.dtype.element_ty),
        mask=col_ok[:, None] & dv_ok[None, :],
    )


@autotune(_BWD_CONFIGS, _INTERPRETER_CONFIG, key=_TUNE_KEY, reset_to_zero=["de_ptr"])
@triton.jit
def _flash_bwd_dq(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr, de_ptr,
    mask_ptr, bias_ptr, e_ptr, cu_q_ptr, cu_k_ptr,
    s_qb, s_qh, s_ql, s_kb, s_kh, s_kl, s_vb, s_vh, s_vl, s_ob, s_oh, s_ol, s_lb, s_lh,
    s_mb, s_mh, s_mi, s_mj, s_bb, s_bh, s_bi, s_bj, s_eh, s_er, s_deh, s_der,
    num_heads, dense_len_q, dense_len_k, head_dim, head_dim_v, scale, scale_log2, max_rel,
    rel_upper, tune_len_q, tune_len_k,
    IS_VARLEN: tl.constexpr, IS_CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_REL: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, REL_WIDTH: tl.constexpr,
):  # fmt: skip
    """dQ for one query block; with the relative term also dE, added atomically (tiles of every
    program share distances, and clipping folds many distances onto the edge rows)."""
    pid_bh = tl.program_id(0)
    batch = (pid_bh // num_heads).to(tl.int64)
    head = (pid_bh % num_heads).to(tl.int64)
    q_start, len_q = _segment(cu_q_ptr, batch, dense_len_q, IS_VARLEN)
    k_start, len_k = _segment(cu_k_ptr, batch, dense_len_k, IS_VARLEN)
    m0 = tl.program_id(1) * BLOCK_M
    if m0 >= len_q:
        return
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    row_ok = offs_m < len_q
    d_ok = offs_d < head_dim
    dv_ok = offs_dv < head_dim_v
    q_ptrs = (
        q_ptr + batch * s_qb + head * s_qh + (q_start + offs_m)[:, None] * s_ql + offs_d[None, :]
    )
    q = tl.load(q_ptrs, mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    do = tl.load(
        do_ptr + batch * s_ob + head * s_oh + (q_start + offs_m)[:, None] * s_ol + offs_dv[None, :],
        mask=row_ok[:, None] & dv_ok[None, :],
        other=0.0,
    )
    row_base = batch * s_lb + head * s_lh + q_start
    lse = tl.load(lse_ptr + row_base + offs_m, mask=row_ok, other=0.0)
    delta = tl.load(delta_ptr + row_base + offs_m, mask=row_ok, other=0.0)
    k_base = k_ptr + batch * s_kb + head * s_kh + k_start * s_kl
    v_base = v_ptr + batch * s_vb + head * s_vh + k_start * s_vl
    mask_base = mask_ptr + batch * s_mb + head * s_mh
    bias_base = bias_ptr + batch * s_bb + head * s_bh
    e_base = e_ptr + head * s_eh

    hi = len_k
    if IS_CAUSAL:
        hi = tl.minimum(len_k, m0 + BLOCK_M + len_k - len_q)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for n0 in range(0, hi, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        col_ok = offs_n < len_k
        k = tl.load(
            k_base + offs_n[:, None] * s_kl + offs_d[None, :],
            mask=col_ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        v = tl.load(
            v_base + offs_n[:, None] * s_vl + offs_dv[None, :],
            mask=col_ok[:, None] & dv_ok[None, :],
            other=0.0,
        )
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        if HAS_REL:
            dist0 = n0 - m0 - (BLOCK_M - 1)
            e_rows, e_idx = _rel_rows(
                e_base, s_er, dist0, offs_d, head_dim, max_rel, rel_upper, REL_WIDTH
            )
            qe = tl.dot(q, tl.trans(e_rows), input_precision=PRECISION)
            s += tl.gather(qe, offs_n[None, :] - offs_m[:, None] - dist0, 1)
        s = _logits(s, offs_m, offs_n, len_q, len_k, scale_log2, mask_base, s_mi, s_mj, bias_base,
                    s_bi, s_bj, IS_CAUSAL, HAS_MASK, HAS_BIAS)  # fmt: skip
        p = tl.exp2(s - lse[:, None])
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
        if HAS_REL:
            # Un-skew dS into distance columns: dQE[i, w] = dS[i, j] with j − i = dist0 + w.
            key_col = (offs_m - m0)[:, None] + tl.arange(0, REL_WIDTH)[None, :] - (BLOCK_M - 1)
            hit = (key_col >= 0) & (key_col < BLOCK_N)
            dqe = tl.where(hit, tl.gather(ds, tl.where(hit, key_col, 0), 1), 0.0).to(q.dtype)
            dq += tl.dot(dqe, e_rows, input_precision=PRECISION)
            de = tl.dot(tl.trans(dqe), q, input_precision=PRECISION)
            tl.atomic_add(
                de_ptr + head * s_deh + e_idx[:, None] * s_der + offs_d[None, :],
                de * scale,
                mask=d_ok[None, :],
            )
    tl.store(
        dq_ptr + batch * s_qb + head * s_qh + (q_start + offs_m)[:, None] * s_ql + offs_d[None, :],
        (dq * scale).to(dq_ptr.dtype.element_ty),
        mask=row_ok[:, None] & d_ok[None, :],
    )


def _strides4(x: torch.Tensor | None) -> tuple[int, int, int, int]:
    return (0, 0, 0, 0) if x is None else tuple(x.stride())  # type: ignore[return-value]


class FlashAttention(torch.autograd.Function):
    """Autograd glue for the kernels above; see :func:`flash_attention` for the arguments."""

    @staticmethod
    def forward(
        ctx,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor | None,
        rel_emb: torch.Tensor | None,
        mask: torch.Tensor | None,
        cu_q: torch.Tensor | None,
        cu_k: torch.Tensor | None,
        causal: bool,
        scale: float,
        max_rel: int,
        rel_upper: int,
        num_seqs: int,
        max_len_q: int,
        max_len_k: int,
    ) -> torch.Tensor:
        batch, heads, len_q, _ = q.shape
        if cu_q is None:
            out = _common.empty((*q.shape[:-1], v.shape[-1]), q.dtype, q.device)
        else:  # packed [T, H, Dv] memory, seen as [1, H, T, Dv] like q
            out = _common.empty((len_q, heads, v.shape[-1]), q.dtype, q.device)
            out = out.unsqueeze(0).transpose(1, 2)
        lse = _common.empty((batch, heads, len_q), torch.float32, q.device)
        if out.numel() > 0:
            _flash_fwd[_grid(num_seqs, heads, max_len_q, "BLOCK_M")](
                q, k, v, out, lse, *_feature_ptrs(q, mask, bias, rel_emb, cu_q, cu_k),
                *_seq_strides(q, k, v, out, lse, cu_q is not None),
                *_strides4(mask), *_strides4(bias), *_rel_strides(rel_emb),
                *_dims(q, k, v), scale * LOG2E_VALUE, max_rel, rel_upper,
                *_tune_lens(max_len_q, max_len_k), **_flags(q, v, mask, bias, rel_emb, cu_q, causal),
            )  # fmt: skip
        ctx.save_for_backward(q, k, v, out, lse, bias, rel_emb, mask, cu_q, cu_k)
        ctx.args = (causal, scale, max_rel, rel_upper, num_seqs, max_len_q, max_len_k)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        q, k, v, out, lse, bias, rel_emb, mask, cu_q, cu_k = ctx.saved_tensors
        causal, scale, max_rel, rel_upper, num_seqs, max_len_q, max_len_k = ctx.args
        heads = q.shape[1]
        grad_out = _common.dense_rows(grad_out)
        # [B, H, L] fp32 like lse, whose strides the kernels use for it.
        delta = (grad_out.float() * out.float()).sum(-1).contiguous()
        dq, dk, dv = (_common.empty(x.shape, x.dtype, x.device, x.stride()) for x in (q, k, v))
        bias_grad = bias is not None and ctx.needs_input_grad[3]
        # Tiles a causal program skips must read as zero gradient, so dBias starts from zeros.
        dbias = torch.zeros(bias.shape, device=q.device) if bias_grad else None
        de = torch.zeros(rel_emb.shape, device=q.device) if rel_emb is not None else None
        flags = _flags(q, v, mask, bias, rel_emb, cu_q, causal)
        common = (
            *_feature_ptrs(q, mask, bias, rel_emb, cu_q, cu_k),
            *_seq_strides(q, k, v, grad_out, lse, cu_q is not None),
            *_strides4(mask), *_strides4(bias), *_rel_strides(rel_emb),
        )  # fmt: skip
        sizes = (*_dims(q, k, v), scale, scale * LOG2E_VALUE, max_rel, rel_upper)
        tune = _tune_lens(max_len_q, max_len_k)
        if k.numel() > 0 and q.shape[2] > 0:
            _flash_bwd_dkdv[_grid(num_seqs, heads, max_len_k, "BLOCK_N")](
                q, k, v, grad_out, lse, delta, dk, dv, dbias if bias_grad else q, *common,
                *(dbias.stride()[:3] if bias_grad else (0, 0, 0)), *sizes, *tune,
                BIAS_GRAD=bias_grad, **flags,
            )  # fmt: skip
        else:
            dk.zero_()
            dv.zero_()
        de_target = de if de is not None else _no_buffer(q)
        if q.numel() > 0:
            _flash_bwd_dq[_grid(num_seqs, heads, max_len_q, "BLOCK_M")](
                q, k, v, grad_out, lse, delta, dq, de_target, *common,
                *(de.stride()[:2] if de is not None else (0, 0)), *sizes, *tune, **flags,
            )  # fmt: skip
        dbias_out = dbias.to(bias.dtype) if bias_grad else None
        de_out = de.to(rel_emb.dtype) if de is not None and ctx.needs_input_grad[4] else None
        return dq, dk, dv, dbias_out, de_out, *([None] * 10)


def _no_buffer(like: torch.Tensor) -> torch.Tensor:
    """Stand-in for an absent atomic target: autotune zeroes it between trials, so it must not alias
    an input (an empty tensor makes that a no-op)."""
    return torch.empty(0, dtype=torch.float32, device=like.device)


def _grid(num_seqs: int, heads: int, max_len: int, block: str):
    """Batch·head on axis 0 (no 65535 limit for many segments), blocks of the longest sequence on 1."""
    return lambda meta: (num_seqs * heads, triton.cdiv(max_len, meta[block]))


def _feature_ptrs(q, mask, bias, rel_emb, cu_q, cu_k) -> tuple:
    """Pointers for the optional inputs; an absent one gets ``q`` (never read, its flag is off)."""
    return tuple(q if x is None else x for x in (mask, bias, rel_emb, cu_q, cu_k))


def _seq_strides(q, k, v, out, lse, varlen: bool) -> tuple[int, ...]:
    """(batch, head, row) strides of q, k, v, o and (batch, head) of lse; a varlen program finds its
    segment through ``cu_seqlens``, so its batch strides are 0."""
    strides = []
    for x in (q, k, v, out):
        strides += [0 if varlen else x.stride(0), x.stride(1), x.stride(2)]
    return (*strides, 0 if varlen else lse.stride(0), lse.stride(1))


def _rel_strides(rel_emb: torch.Tensor | None) -> tuple[int, int]:
    return (0, 0) if rel_emb is None else (rel_emb.stride(0), rel_emb.stride(1))


def _dims(q, k, v) -> tuple[int, ...]:
    return q.shape[1], q.shape[2], k.shape[2], q.shape[3], v.shape[3]


def _tune_lens(max_len_q: int, max_len_k: int) -> tuple[int, int]:
    """Autotune keys: powers of 2, so that varlen batches with new longest segments reuse a config."""
    return triton.next_power_of_2(max(max_len_q, 1)), triton.next_power_of_2(max(max_len_k, 1))


def _flags(q, v, mask, bias, rel_emb, cu_q, causal: bool) -> dict:
    return {
        "IS_VARLEN": cu_q is not None,
        "IS_CAUSAL": causal,
        "HAS_MASK": mask is not None,
        "HAS_BIAS": bias is not None,
        "HAS_REL": rel_emb is not None,
        "PRECISION": _common.dot_precision(q.dtype),
        "BLOCK_D": _common.block_size(q.shape[3]),
        "BLOCK_DV": _common.block_size(v.shape[3]),
    }


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float,
    causal: bool = False,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    rel_emb: torch.Tensor | None = None,
    rel_causal: bool = False,
    cu_seqlens_q: torch.Tensor | None = None,
    cu_seqlens_k: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax attention on ``[B, H, L, D]`` tensors (varlen: ``[1, H, T, D]`` views plus offsets).

    ``mask`` (bool) and ``bias`` broadcast to ``[B, H, Lq, Lk]``; ``rel_emb`` ``[H, R, D]`` adds
    ``q_i·E[clip(j − i)]`` to the raw scores, with distances clipped to ``[−K, 0]`` if ``rel_causal`` else
    ``[−K, K]``; ``cu_seqlens_q/k`` (int ``[N+1]``) switch to varlen mode. Differentiable in q, k, v,
    bias and rel_emb.
    """
    q, k, v = (_common.dense_rows(x) for x in (q, k, v))
    target = (*q.shape[:-1], k.shape[2])
    if mask is not None:  # uint8 view: bool pointers are not portable across Triton versions
        mask = mask.view(torch.uint8).expand(target)
    if bias is not None:
        bias = bias.expand(target)
    max_rel = rel_upper = 0
    if rel_emb is not None:
        rel_emb = rel_emb if rel_emb.stride(-1) == 1 else rel_emb.contiguous()
        max_rel = rel_emb.shape[1] - 1 if rel_causal else (rel_emb.shape[1] - 1) // 2
        rel_upper = 0 if rel_causal else max_rel
    if cu_seqlens_q is None:
        num_seqs, max_len_q, max_len_k = q.shape[0], q.shape[2], k.shape[2]
        cu_q = cu_k = None
    else:
        cu_q = cu_seqlens_q.to(torch.int32)
        cu_k = cu_q if cu_seqlens_k is None else cu_seqlens_k.to(torch.int32)
        num_seqs = cu_q.numel() - 1
        max_len_q = int(cu_q.diff().max()) if num_seqs > 0 else 0
        max_len_k = int(cu_k.diff().max()) if num_seqs > 0 else 0
    return FlashAttention.apply(
        q, k, v, bias, rel_emb, mask, cu_q, cu_k, causal, scale, max_rel, rel_upper,
        num_seqs, max_len_q, max_len_k,
    )  # fmt: skip
