"""Backend choice for every core op: ``"auto" | "reference" | "triton"``.

``"auto"`` (the default, overridable with the environment variable ``MANYHEADS_BACKEND``) picks the
Triton kernel for CUDA tensors when Triton imports, and the plain-PyTorch reference otherwise. The result
must not depend on the backend beyond the tolerances in DESIGN.md.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Literal

import torch

Backend = Literal["auto", "reference", "triton"]
BACKENDS: tuple[str, ...] = ("auto", "reference", "triton")
ENV_VAR = "MANYHEADS_BACKEND"


@functools.cache
def triton_available() -> bool:
    """True when the ``triton`` package can be imported (it may still lack a GPU driver)."""
    return importlib.util.find_spec("triton") is not None


def triton_interpreted() -> bool:
    """True when Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``; Triton reads it
    when a kernel module is imported, so set it before)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(
    backend: str | None, device: torch.device, op: str, has_kernel: bool = True
) -> Literal["reference", "triton"]:
    """Turn a requested backend into the one that will run ``op`` for tensors on ``device``.

    ``backend=None`` reads ``MANYHEADS_BACKEND`` (default ``"auto"``). Asking for ``"triton"`` where it
    cannot run (no kernel for ``op``, no Triton, or a CPU tensor outside the interpreter) is an error,
    never a silent fallback.
    """
    choice = backend if backend is not None else os.environ.get(ENV_VAR, "auto")
    if choice not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {choice!r}")
    if not has_kernel:
        if choice == "triton":
            raise ValueError(f"{op} has no Triton kernel; use backend='reference' or 'auto'")
        return "reference"
    runnable = triton_available() and (device.type == "cuda" or triton_interpreted())
    if choice == "auto":
        return "triton" if runnable and device.type == "cuda" else "reference"
    if choice == "triton" and not runnable:
        raise ValueError(
            f"{op}: backend='triton' needs the triton package and a CUDA tensor (or TRITON_INTERPRET=1); "
            f"got a tensor on {device} with triton {'present' if triton_available() else 'missing'}"
        )
    return choice  # type: ignore[return-value]
