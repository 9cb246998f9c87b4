"""Backend choice for every core op, in one table: ``"auto" | "reference" | "triton"``.

:data:`OPS` names, for each op, its plain-PyTorch reference, its Triton kernel (if any), which inputs the
kernel supports and when ``"auto"`` prefers it. An op validates its inputs and hands them, by name, to
:func:`dispatch`, which runs the implementation :func:`resolve_backend` picks:

- ``"auto"`` (the default; the environment variable ``MANYHEADS_BACKEND`` overrides it): on CUDA tensors
  the Triton kernel where Triton imports, the kernel supports the inputs and the entry prefers it; the
  reference otherwise (always on the CPU). Plain dense attention (mask and causal allowed, no bias) stays
  on the reference, which is PyTorch's SDPA: its fused CUDA kernels are the ones to beat, and ours has not
  been measured faster than them yet.
- ``"reference"``: always the PyTorch path.
- ``"triton"``: the kernel, or a clear error where it cannot run (no Triton, a CPU tensor outside the
  interpreter, an op without a kernel, inputs it does not support) — never a silent fallback.

The result must not depend on the backend beyond the tolerances in the core guide (docs/core.md).

Under autocast (``torch.autocast``, Lightning's ``bf16-mixed``) each entry's ``autocast`` field says how
the op computes, whichever implementation runs: ``"low_precision"`` in autocast's dtype (softmax
attention: the kernels accumulate in fp32), ``"fp32"`` in fp32 (ops whose sums cancel or accumulate over
many terms, where bf16 loses the result). :func:`dispatch` casts the floating-point inputs and runs the
implementation with autocast off. Where the device has no native arithmetic in autocast's dtype (a CPU
without AVX-512), ``"low_precision"`` ops compute in fp32 too (:func:`low_precision_dtype`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

Backend = Literal["auto", "reference", "triton"]
AutocastPolicy = Literal["low_precision", "fp32"]
BACKENDS: tuple[str, ...] = ("auto", "reference", "triton")
ENV_VAR = "MANYHEADS_BACKEND"
MAX_KERNEL_HEAD_DIM = 128


def _any_inputs(**arguments: Any) -> bool:
    return True


def _head_dims_fit(q: Tensor, v: Tensor, **arguments: Any) -> bool:
    """Our kernels hold ``[BLOCK, D]`` register tiles: wider heads would spill on GPUs."""
    return max(q.shape[-1], v.shape[-1]) <= MAX_KERNEL_HEAD_DIM


def _has_bias(bias: Tensor | None = None, **arguments: Any) -> bool:
    """SDPA runs mask and causal attention in fused CUDA kernels; an arbitrary float bias is where our
    kernel pays (it never materialises the masked bias)."""
    return bias is not None


@dataclass(frozen=True)
class OpImplementations:
    """How one op can run. Implementations are ``"module:function"`` names, imported on first use so
    that a kernel module (Triton, ``TRITON_INTERPRET`` read at import) loads only when it is chosen; both
    take the op's arguments by name."""

    reference: str
    triton: str | None = None
    supports: Callable[..., bool] = _head_dims_fit  # can the kernel take these arguments?
    kernel_limits: str = f"head dims (of q and v) up to {MAX_KERNEL_HEAD_DIM}"  # for the error
    auto_prefers_kernel: Callable[..., bool] = _any_inputs  # under "auto" on CUDA
    autocast: AutocastPolicy = "low_precision"  # how it computes inside autocast


_FLASH = "core.kernels.flash_attention:flash_attention"  # one kernel family, three ops

OPS: dict[str, OpImplementations] = {
    "attention": OpImplementations(
        "core.ops.attention:attention_reference", _FLASH, auto_prefers_kernel=_has_bias
    ),
    "relative_attention": OpImplementations(
        "core.ops.relative_attention:relative_attention_reference", _FLASH
    ),
    "varlen_attention": OpImplementations(
        "core.ops.varlen_attention:varlen_attention_reference", _FLASH
    ),
    "scattered_linear_attention": OpImplementations(
        "core.ops.scattered_linear_attention:scattered_linear_attention_reference",
        "core.kernels.scattered_linear_attention:scattered_linear_attention_triton",
    ),
    # sums over a whole bag (index_add) or segment: bf16 would accumulate them with 8-bit mantissas
    "segment_softmax": OpImplementations(
        "core.ops.segment_softmax:segment_softmax_reference", autocast="fp32"
    ),
    "attention_pool": OpImplementations(
        "core.ops.segment_softmax:attention_pool_reference", autocast="fp32"
    ),
    # the query gradient sums terms that cancel (the softmax gradient sums to zero over the keys)
    "pointer_attention": OpImplementations(
        "core.ops.pointer_attention:pointer_attention_reference", autocast="fp32"
    ),
}


@functools.cache
def triton_available() -> bool:
    """True when the ``triton`` package can be imported (it may still lack a GPU driver)."""
    return importlib.util.find_spec("triton") is not None


def triton_interpreted() -> bool:
    """True when Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``; Triton reads it
    when a kernel module is imported, so set it before)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(
    backend: str | None,
    device: torch.device,
    op: str,
    arguments: Mapping[str, Any] | None = None,
) -> Literal["reference", "triton"]:
    """Turn a requested backend into the one that will run ``op`` for tensors on ``device``.

    ``backend=None`` reads ``MANYHEADS_BACKEND`` (default ``"auto"``). ``arguments`` are the op's
    validated inputs by name (as passed to :func:`dispatch`); without them the kernel is taken to
    support the call and ``"auto"`` uses each op's default preference.
    """
    choice = backend if backend is not None else os.environ.get(ENV_VAR, "auto")
    if choice not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {choice!r}")
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; the table knows {sorted(OPS)}")
    entry, arguments = OPS[op], arguments or {}
    if choice == "reference":
        return "reference"
    if entry.triton is None:
        if choice == "triton":
            raise ValueError(f"{op} has no Triton kernel; use backend='reference' or 'auto'")
        return "reference"
    supported = not arguments or entry.supports(**arguments)
    if choice == "auto":
        prefers = not arguments or entry.auto_prefers_kernel(**arguments)
        use_kernel = device.type == "cuda" and triton_available() and supported and prefers
        return "triton" if use_kernel else "reference"
    if not (triton_available() and (device.type == "cuda" or triton_interpreted())):
        raise ValueError(
            f"{op}: backend='triton' needs the triton package and a CUDA tensor (or TRITON_INTERPRET=1); "
            f"got a tensor on {device} with triton {'present' if triton_available() else 'missing'}"
        )
    if not supported:
        raise ValueError(f"{op}: the Triton kernel supports {entry.kernel_limits}; use 'reference'")
    return "triton"


def load(implementation: str) -> Callable[..., Any]:
    """The function a ``"module:function"`` table entry names (imports the module on first use)."""
    module, name = implementation.split(":")
    return getattr(importlib.import_module(module), name)


@functools.cache
def _cpu_computes_natively(dtype: torch.dtype) -> bool:
    """Whether oneDNN has kernels in ``dtype`` on this CPU (bf16: AVX-512 or Arm BF16; fp16: AVX-512
    FP16 or AMX). Elsewhere PyTorch emulates them: a 1024² bf16 matrix product ran ~100× slower than
    fp32 on a 2-core AVX2 machine, and oneDNN builds no bf16 LSTM there (autocast's LSTM raises)."""
    if not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return dtype == torch.float16 and bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())


def low_precision_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype ``"low_precision"`` ops compute in on ``device``: autocast's dtype when autocast is
    on there and the device computes in it natively; None otherwise (autocast off, or emulated: then
    inside autocast they compute in fp32, which is faster and more precise)."""
    if not torch.is_autocast_enabled(device.type):
        return None
    dtype = torch.get_autocast_dtype(device.type)
    if device.type == "cpu" and not _cpu_computes_natively(dtype):
        return None
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return None
    return dtype


def _cast_floating(arguments: Mapping[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    return {
        name: value.to(dtype) if isinstance(value, Tensor) and value.is_floating_point() else value
        for name, value in arguments.items()
    }


def dispatch(op: str, backend: str | None, **arguments: Any) -> Any:
    """Run ``op`` on validated ``arguments`` (by name; the first one's device decides) with the
    implementation :func:`resolve_backend` picks — inside autocast, in the dtype its entry's
    ``autocast`` policy gives, with autocast off."""
    device = next(iter(arguments.values())).device
    entry = OPS[op]
    use_kernel = resolve_backend(backend, device, op, arguments) == "triton"
    implementation = load(entry.triton if use_kernel and entry.triton else entry.reference)
    if not torch.is_autocast_enabled(device.type):
        return implementation(**arguments)
    low_precision = low_precision_dtype(device) if entry.autocast == "low_precision" else None
    with torch.autocast(device.type, enabled=False):
        return implementation(**_cast_floating(arguments, low_precision or torch.float32))
