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

from typing import Any

import torch
import triton
import triton.language as tl

from core.kernels import _common
from core.kernels._autotune import autotune
from core.kernels._common import load_rows, store_rows


def _config(chunk: int, warps: int) -> triton.Config:
    return triton.Config({"CHUNK": chunk}, num_warps=warps, num_stages=2)


_GPU_CONFIGS = [_config(32, 4), _config(16, 2), _config(32, 2), _config(64, 4)]
_INTERPRETER_CONFIG = _config(32, 4)
_TUNE_KEY = ["BLOCK_D", "BLOCK_DV", "tune_len"]


@triton.jit
def _load_fp32(base, rows, stride_row, length, width, BLOCK: tl.constexpr):
    return load_rows(base, rows, stride_row, length, width, BLOCK).to(tl.float32)


@triton.jit
def _segment(
    k_ptr, v_ptr, cu_ptr, stride_q, stride_k, stride_v, stride_o, num_heads, head_dim, head_dim_v,
    PRECISION: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    """Program prologue: this program's (segment, head) from grid axis 0 (segment · heads + head)
    gives the segment's length and the element offsets of its first row in q, k, v and o; then one
    pass over the segment sums its state ``KV = Σ φ(k)ᵀ v`` ``[BLOCK_D, BLOCK_DV]`` and
    ``z = Σ φ(k)`` ``[BLOCK_D]`` in fp32."""
    pid = tl.program_id(0)
    segment = pid // num_heads
    head = (pid % num_heads).to(tl.int64)
    start = tl.load(cu_ptr + segment).to(tl.int64)
    length = tl.load(cu_ptr + segment + 1) - start
    k_offset = start * stride_k[0] + head * stride_k[1]
    v_offset = start * stride_v[0] + head * stride_v[1]
    kv = tl.zeros([BLOCK_D, BLOCK_DV], tl.float32)
    z = tl.zeros([BLOCK_D], tl.float32)
    for c0 in range(0, length, CHUNK):
        rows = c0 + tl.arange(0, CHUNK)
        phi_k = tl.maximum(
            _load_fp32(k_ptr + k_offset, rows, stride_k[0], length, head_dim, BLOCK_D), 0.0
        )
        v = _load_fp32(v_ptr + v_offset, rows, stride_v[0], length, head_dim_v, BLOCK_DV)
        kv += tl.dot(tl.trans(phi_k), v, input_precision=PRECISION)
        z += tl.sum(phi_k, 0)
    q_offset = start * stride_q[0] + head * stride_q[1]
    o_offset = start * stride_o[0] + head * stride_o[1]
    return length, q_offset, k_offset, v_offset, o_offset, kv, z


@autotune(_GPU_CONFIGS, _INTERPRETER_CONFIG, key=_TUNE_KEY)
@triton.jit
def _sla_fwd(
    q_ptr, k_ptr, v_ptr, o_ptr, cu_ptr, stride_q, stride_k, stride_v, stride_o,
    num_heads, head_dim, head_dim_v, eps, tune_len,
    PRECISION: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    """Outputs of one (segment, head)."""
    length, q_offset, _, _, o_offset, kv, z = _segment(
        k_ptr, v_ptr, cu_ptr, stride_q, stride_k, stride_v, stride_o, num_heads, head_dim,
        head_dim_v, PRECISION, BLOCK_D, BLOCK_DV, CHUNK,
    )  # fmt: skip
    for c0 in range(0, length, CHUNK):
        rows = c0 + tl.arange(0, CHUNK)
        q = _load_fp32(q_ptr + q_offset, rows, stride_q[0], length, head_dim, BLOCK_D)
        phi_q = tl.maximum(q, 0.0)
        numerator = tl.dot(phi_q, kv, input_precision=PRECISION)
        out = numerator / (tl.sum(phi_q * z[None, :], 1) + eps)[:, None]
        store_rows(o_ptr + o_offset, rows, stride_o[0], length, head_dim_v, BLOCK_DV, out)


@autotune(_GPU_CONFIGS, _INTERPRETER_CONFIG, key=_TUNE_KEY)
@triton.jit
def _sla_bwd(
    q_ptr, k_ptr, v_ptr, do_ptr, dq_ptr, dk_ptr, dv_ptr, cu_ptr,
    stride_q, stride_k, stride_v, stride_o, num_heads, head_dim, head_dim_v, eps, tune_len,
    PRECISION: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    """Gradients of one (segment, head): with KV and z recomputed, one pass writes dQ while summing
    dKV and dz, and a last pass writes dK and dV. dq/dk/dv share q/k/v's strides, dO shares O's."""
    length, q_offset, k_offset, v_offset, o_offset, kv, z = _segment(
        k_ptr, v_ptr, cu_ptr, stride_q, stride_k, stride_v, stride_o, num_heads, head_dim,
        head_dim_v, PRECISION, BLOCK_D, BLOCK_DV, CHUNK,
    )  # fmt: skip
    d_kv = tl.zeros([BLOCK_D, BLOCK_DV], tl.float32)
    d_z = tl.zeros([BLOCK_D], tl.float32)
    for c0 in range(0, length, CHUNK):
        rows = c0 + tl.arange(0, CHUNK)
        q = _load_fp32(q_ptr + q_offset, rows, stride_q[0], length, head_dim, BLOCK_D)
        d_out = _load_fp32(do_ptr + o_offset, rows, stride_o[0], length, head_dim_v, BLOCK_DV)
        phi_q = tl.maximum(q, 0.0)
        denominator = tl.sum(phi_q * z[None, :], 1) + eps
        out = tl.dot(phi_q, kv, input_precision=PRECISION) / denominator[:, None]
        d_num = d_out / denominator[:, None]
        d_den = -tl.sum(d_out * out, 1) / denominator
        d_phi_q = (
            tl.dot(d_num, tl.trans(kv), input_precision=PRECISION) + d_den[:, None] * z[None, :]
        )
        d_q = tl.where(q > 0.0, d_phi_q, 0.0)
        store_rows(dq_ptr + q_offset, rows, stride_q[0], length, head_dim, BLOCK_D, d_q)
        d_kv += tl.dot(tl.trans(phi_q), d_num, input_precision=PRECISION)
        d_z += tl.sum(d_den[:, None] * phi_q, 0)
    for c0 in range(0, length, CHUNK):
        rows = c0 + tl.arange(0, CHUNK)
        k = _load_fp32(k_ptr + k_offset, rows, stride_k[0], length, head_dim, BLOCK_D)
        v = _load_fp32(v_ptr + v_offset, rows, stride_v[0], length, head_dim_v, BLOCK_DV)
        d_phi_k = tl.dot(v, tl.trans(d_kv), input_precision=PRECISION) + d_z[None, :]
        d_k = tl.where(k > 0.0, d_phi_k, 0.0)
        store_rows(dk_ptr + k_offset, rows, stride_k[0], length, head_dim, BLOCK_D, d_k)
        d_v = tl.dot(tl.maximum(k, 0.0), d_kv, input_precision=PRECISION)
        store_rows(dv_ptr + v_offset, rows, stride_v[0], length, head_dim_v, BLOCK_DV, d_v)


def _kernel_arguments(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, eps: float
) -> dict[str, Any]:
    """The arguments, by name, both kernels take."""
    longest = int(cu.diff().max()) if cu.numel() > 1 else 0
    return {
        "q_ptr": q, "k_ptr": k, "v_ptr": v, "cu_ptr": cu,
        "stride_q": q.stride(), "stride_k": k.stride(), "stride_v": v.stride(),
        "num_heads": q.shape[1], "head_dim": q.shape[2], "head_dim_v": v.shape[2], "eps": eps,
        "tune_len": triton.next_power_of_2(max(longest, 1)),
        "PRECISION": _common.dot_precision(q.dtype),
        "BLOCK_D": _common.block_size(q.shape[2]), "BLOCK_DV": _common.block_size(v.shape[2]),
    }  # fmt: skip


class _ScatteredLinearAttention(torch.autograd.Function):
    """Autograd glue: the backward recomputes KV and z instead of saving ``[N, H, D, Dv]`` states."""

    @staticmethod
    def forward(ctx, q, k, v, cu_seqlens: torch.Tensor, eps: float) -> torch.Tensor:
        q, k, v = (x.contiguous() for x in (q, k, v))
        cu = cu_seqlens.to(torch.int32)
        out = _common.empty((*q.shape[:2], v.shape[2]), q.dtype, q.device)
        if out.numel() > 0:
            grid = (q.shape[1] * (cu.numel() - 1),)
            _sla_fwd[grid](o_ptr=out, stride_o=out.stride(), **_kernel_arguments(q, k, v, cu, eps))
        ctx.save_for_backward(q, k, v, cu)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        q, k, v, cu = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        dq, dk, dv = (_common.empty(x.shape, x.dtype, x.device) for x in (q, k, v))
        if q.numel() > 0:
            grid = (q.shape[1] * (cu.numel() - 1),)
            _sla_bwd[grid](
                do_ptr=grad_out, dq_ptr=dq, dk_ptr=dk, dv_ptr=dv, stride_o=grad_out.stride(),
                **_kernel_arguments(q, k, v, cu, ctx.eps),
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
    return _ScatteredLinearAttention.apply(q, k, v, cu_seqlens, eps)
