"""Scattered linear attention (ScatterFormer, He et al. 2024, §3.2) over packed segments.

``q, k [T, H, D]``, ``v [T, H, Dv]``, int32 ``cu_seqlens [N+1]`` → ``[T, H, Dv]``, with φ = ReLU:
``y_i = φ(q_i) KV / (φ(q_i)·z + ε)``, ``KV = Σ_j φ(k_j)ᵀ v_j`` and ``z = Σ_j φ(k_j)`` over i's segment.

One program per (segment, head) streams its rows in chunks: a first pass accumulates ``KV [D, Dv]`` and
``z [D]`` in registers, a second writes the outputs. The backward program recomputes KV and z, then one
pass produces dQ while accumulating ``dKV`` and ``dz`` and a last pass produces dK and dV — every sum is
owned by one program, so no atomics are needed. Work and traffic are O(T·D·Dv), one read of each input
per pass.
"""

# Triton convention: compile-time meta-parameters (tl.constexpr) are UPPER_CASE.
# ruff: noqa: N803

from __future__ import annotations

import torch
import triton
import triton.language as tl

from core.kernels import _common
from core.kernels._autotune import autotune


def _config(chunk: int, warps: int) -> triton.Config:
    return triton.Config({"CHUNK": chunk}, num_warps=warps, num_stages=2)


_GPU_CONFIGS = [_config(32, 4), _config(16, 2), _config(32, 2), _config(64, 4)]
_INTERPRETER_CONFIG = _config(32, 4)
_TUNE_KEY = ["BLOCK_D", "BLOCK_DV", "tune_len"]


@triton.jit
def _load_chunk(base, s_row, rows, row_ok, offs, width):
    """Rows ``rows`` of a ``[T, ·, width]`` head slice as fp32 ``[CHUNK, BLOCK]``, zeros outside."""
    ptrs = base + rows[:, None] * s_row + offs[None, :]
    return tl.load(ptrs, mask=row_ok[:, None] & (offs < width)[None, :], other=0.0).to(tl.float32)


@triton.jit
def _segment_state(k_base, v_base, s_kt, s_vt, length, offs_d, offs_dv, head_dim, head_dim_v,
                   PRECISION: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
                   CHUNK: tl.constexpr):  # fmt: skip
    """``KV = Σ φ(k)ᵀ v`` ``[BLOCK_D, BLOCK_DV]`` and ``z = Σ φ(k)`` ``[BLOCK_D]`` of one segment."""
    kv = tl.zeros([BLOCK_D, BLOCK_DV], tl.float32)
    z = tl.zeros([BLOCK_D], tl.float32)
    for c0 in range(0, length, CHUNK):
        rows = c0 + tl.arange(0, CHUNK)
        row_ok = rows < length
        phi_k = tl.maximum(_load_chunk(k_base, s_kt, rows, row_ok, offs_d, head_dim), 0.0)
        v = _load_chunk(v_base, s_vt, rows, row_ok, offs_dv, head_dim_v)
        kv += tl.dot(tl.trans(phi_k), v, input_precision=PRECISION)
        z += tl.sum(phi_k, 0)
    return kv, z


@autotune(_GPU_CONFIGS, _INTERPRETER_CONFIG, key=_TUNE_KEY)
@triton.jit
def _sla_fwd(
    q_ptr, k_ptr, v_ptr, o_ptr, cu_ptr, s_qt, s_qh, s_kt, s_kh, s_vt, s_vh, s_ot, s_oh,
    num_heads, head_dim, head_dim_v, eps, tune_len,
    PRECISION: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    seg = pid // num_heads
    head = (pid % num_heads).to(tl.int64)
    start = tl.load(cu_ptr + seg).to(tl.int64)
    length = tl.load(cu_ptr + seg + 1) - start
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    q_base = q_ptr + start * s_qt + head * s_qh
    o_base = o_ptr + start * s_ot + head * s_oh
    kv, z = _segment_state(k_ptr + start * s_kt + head * s_kh, v_ptr + start * s_vt + head * s_vh,
                           s_kt, s_vt, length, offs_d, offs_dv, head_dim, head_dim_v,
                           PRECISION, BLOCK_D, BLOCK_DV, CHUNK)  # fmt: skip
    for c0 in range(0, length, CHUNK):
        rows = c0 + tl.arange(0, CHUNK)
        row_ok = rows < length
        phi_q = tl.maximum(_load_chunk(q_base, s_qt, rows, row_ok, offs_d, head_dim), 0.0)
        numerator = tl.dot(phi_q, kv, input_precision=PRECISION)
        denominator = tl.sum(phi_q * z[None, :], 1) + eps
        tl.store(
            o_base + rows[:, None] * s_ot + offs_dv[None, :],
            (numerator / denominator[:, None]).to(o_ptr.dtype.element_ty),
            mask=row_ok[:, None] & (offs_dv < head_dim_v)[None, :],
        )


@autotune(_GPU_CONFIGS, _INTERPRETER_CONFIG, key=_TUNE_KEY)
@triton.jit
def _sla_bwd(
    q_ptr, k_ptr, v_ptr, do_ptr, dq_ptr, dk_ptr, dv_ptr, cu_ptr,
    s_qt, s_qh, s_kt, s_kh, s_vt, s_vh, s_ot, s_oh,
    num_heads, head_dim, head_dim_v, eps, tune_len,
    PRECISION: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    """Gradients of one (segment, head); dq/dk/dv share q/k/v's strides, dO shares O's."""
    pid = tl.program_id(0)
    seg = pid // num_heads
    head = (pid % num_heads).to(tl.int64)
    start = tl.load(cu_ptr + seg).to(tl.int64)
    length = tl.load(cu_ptr + seg + 1) - start
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    d_ok = offs_d < head_dim
    dv_ok = offs_dv < head_dim_v
    q_off = start * s_qt + head * s_qh
    k_off = start * s_kt + head * s_kh
    v_off = start * s_vt + head * s_vh
    kv, z = _segment_state(k_ptr + k_off, v_ptr + v_off, s_kt, s_vt, length, offs_d, offs_dv,
                           head_dim, head_dim_v, PRECISION, BLOCK_D, BLOCK_DV, CHUNK)  # fmt: skip
    d_kv = tl.zeros([BLOCK_D, BLOCK_DV], tl.float32)
    d_z = tl.zeros([BLOCK_D], tl.float32)
    for c0 in range(0, length, CHUNK):
        rows = c0 + tl.arange(0, CHUNK)
        row_ok = rows < length
        q = _load_chunk(q_ptr + q_off, s_qt, rows, row_ok, offs_d, head_dim)
        d_out = _load_chunk(do_ptr + start * s_ot + head * s_oh, s_ot, rows, row_ok, offs_dv,
                            head_dim_v)  # fmt: skip
        phi_q = tl.maximum(q, 0.0)
        denominator = tl.sum(phi_q * z[None, :], 1) + eps
        out = tl.dot(phi_q, kv, input_precision=PRECISION) / denominator[:, None]
        d_num = d_out / denominator[:, None]
        d_den = -tl.sum(d_out * out, 1) / denominator
        d_phi_q = (
            tl.dot(d_num, tl.trans(kv), input_precision=PRECISION) + d_den[:, None] * z[None, :]
        )
        tl.store(
            dq_ptr + q_off + rows[:, None] * s_qt + offs_d[None, :],
            tl.where(q > 0.0, d_phi_q, 0.0).to(dq_ptr.dtype.element_ty),
            mask=row_ok[:, None] & d_ok[None, :],
        )
        d_kv += tl.dot(tl.trans(phi_q), d_num, input_precision=PRECISION)
        d_z += tl.sum(d_den[:, None] * phi_q, 0)
    for c0 in range(0, length, CHUNK):
        rows = c0 + tl.arange(0, CHUNK)
        row_ok = rows < length
        k = _load_chunk(k_ptr + k_off, s_kt, rows, row_ok, offs_d, head_dim)
        v = _load_chunk(v_ptr + v_off, s_vt, rows, row_ok, offs_dv, head_dim_v)
        phi_k = tl.maximum(k, 0.0)
        d_phi_k = tl.dot(v, tl.trans(d_kv), input_precision=PRECISION) + d_z[None, :]
        tl.store(
            dk_ptr + k_off + rows[:, None] * s_kt + offs_d[None, :],
            tl.where(k > 0.0, d_phi_k, 0.0).to(dk_ptr.dtype.element_ty),
            mask=row_ok[:, None] & d_ok[None, :],
        )
        tl.store(
            dv_ptr + v_off + rows[:, None] * s_vt + offs_dv[None, :],
            tl.dot(phi_k, d_kv, input_precision=PRECISION).to(dv_ptr.dtype.element_ty),
            mask=row_ok[:, None] & dv_ok[None, :],
        )


def _launch_args(q: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, eps: float) -> tuple:
    longest = int(cu.diff().max()) if cu.numel() > 1 else 0
    return q.shape[1], q.shape[2], v.shape[2], eps, triton.next_power_of_2(max(longest, 1))


def _meta(q: torch.Tensor, v: torch.Tensor) -> dict:
    return {
        "PRECISION": _common.dot_precision(q.dtype),
        "BLOCK_D": _common.block_size(q.shape[2]),
        "BLOCK_DV": _common.block_size(v.shape[2]),
    }


class ScatteredLinearAttention(torch.autograd.Function):
    """Autograd glue: the backward recomputes KV and z instead of saving ``[N, H, D, Dv]`` states."""

    @staticmethod
    def forward(ctx, q, k, v, cu_seqlens: torch.Tensor, eps: float) -> torch.Tensor:
        q, k, v = (x.contiguous() for x in (q, k, v))
        cu = cu_seqlens.to(torch.int32)
        out = _common.empty((*q.shape[:2], v.shape[2]), q.dtype, q.device)
        grid = (q.shape[1] * (cu.numel() - 1),)
        if out.numel() > 0:
            _sla_fwd[grid](
                q, k, v, out, cu, q.stride(0), q.stride(1), k.stride(0), k.stride(1),
                v.stride(0), v.stride(1), out.stride(0), out.stride(1),
                *_launch_args(q, v, cu, eps), **_meta(q, v),
            )  # fmt: skip
        ctx.save_for_backward(q, k, v, cu)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        q, k, v, cu = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        dq, dk, dv = (_common.empty(x.shape, x.dtype, x.device) for x in (q, k, v))
        grid = (q.shape[1] * (cu.numel() - 1),)
        if q.numel() > 0:
            _sla_bwd[grid](
                q, k, v, grad_out, dq, dk, dv, cu, q.stride(0), q.stride(1), k.stride(0),
                k.stride(1), v.stride(0), v.stride(1), grad_out.stride(0), grad_out.stride(1),
                *_launch_args(q, v, cu, ctx.eps), **_meta(q, v),
            )  # fmt: skip
        return dq, dk, dv, None, None


def scattered_linear_attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    *,
    eps: float = 1e-6,
) -> torch.Tensor:
    """``φ(q) KV / (φ(q)·z + eps)`` per segment of packed ``[T, H, D]`` tokens (φ = ReLU); differentiable
    in q, k and v. Empty segments are allowed."""
    return ScatteredLinearAttention.apply(q, k, v, cu_seqlens, eps)
