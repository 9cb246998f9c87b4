"""Kernel tests: Triton kernels against their reference ops, under the CPU interpreter or on CUDA.

They run in their own process (``TRITON_INTERPRET=1`` must be set before Triton kernels are imported):
``TRITON_INTERPRET=1 python -m pytest tests/core/kernels -m "kernels and not gpu"``. Test modules reach the
kernels only through ``core.ops`` or inside tests, so collecting them in the default run imports no
kernel. Every output buffer a kernel wrapper allocates is NaN-filled first, so an element a kernel forgets
to write fails the comparison.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
RUN_COMMAND = 'TRITON_INTERPRET=1 python -m pytest tests/core/kernels -m "kernels and not gpu"'

# Max abs error relative to the fp64 output's largest magnitude (docs/core.md, Backends). The scale has a
# floor: inputs are unit normals, so a gradient that is exactly zero in exact arithmetic (a query with a
# single key) still carries rounding noise the size of its O(1) terms.
TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 2e-2}
SCALE_FLOOR = 0.1
# FlashAttention rule: the kernel's error against fp64 may be this many times the plain PyTorch path's.
RULE_FACTOR_OUTPUT, RULE_FACTOR_GRAD = 2.0, 3.0


def _skip_reason() -> str | None:
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install manyheads[kernels])"
    if not INTERPRETED and not torch.cuda.is_available():
        return f"kernel tests need a CUDA device or TRITON_INTERPRET=1 set before import: {RUN_COMMAND}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    if reason is None:
        return
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.skip(reason=reason))


# tl.dot on bf16 is wrong in the Triton 3.9 interpreter: bf16 is checked on GPUs only.
ON_GPU = torch.cuda.is_available() and not INTERPRETED
DTYPES = {"fp32": torch.float32, "fp16": torch.float16} | (
    {"bf16": torch.bfloat16} if ON_GPU else {}
)


@pytest.fixture
def device() -> str:
    """Where the kernels run: the GPU when there is one (and no interpreter was asked for), else CPU."""
    return "cuda" if ON_GPU else "cpu"


@pytest.fixture(params=list(DTYPES.values()), ids=list(DTYPES))
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


@pytest.fixture(autouse=True)
def poisoned_buffers(monkeypatch: pytest.MonkeyPatch) -> list[torch.Size]:
    """NaN-fill every buffer the kernel wrappers allocate; returns the shapes allocated so far."""
    from core.kernels import _common

    allocated: list[torch.Size] = []
    plain_empty = _common.empty

    def nan_empty(shape, dtype, device, strides=None):
        out = plain_empty(shape, dtype, device, strides)
        allocated.append(out.shape)
        return out.fill_(float("nan")) if out.is_floating_point() else out

    monkeypatch.setattr(_common, "empty", nan_empty)
    return allocated


@pytest.fixture
def gen() -> torch.Generator:
    """Fresh seeded CPU generator per test: random inputs are reproducible and never zeros."""
    return torch.Generator().manual_seed(20240611)


def _run(
    fn: Callable, inputs: Sequence[torch.Tensor], grad_out: torch.Tensor | None, dtype, device
):
    """Output and the gradients of every floating input of ``fn`` run in ``dtype``."""
    cast = [
        x.to(device=device, dtype=dtype if x.is_floating_point() else x.dtype)
        .detach()
        .requires_grad_(x.is_floating_point())
        for x in inputs
    ]
    out = fn(*cast)
    if grad_out is None:
        grad_out = torch.randn(
            out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7)
        )
    grads = torch.autograd.grad(
        out, [x for x in cast if x.requires_grad], grad_out.to(device, dtype)
    )
    return [out, *grads], grad_out


@pytest.fixture
def assert_matches(poisoned_buffers: list[torch.Size]) -> Callable:
    """``assert_matches(kernel_fn, reference_fn, inputs, dtype, device)`` checks the kernel's output and
    the gradients of all floating inputs against the reference op in fp64 (docs/core.md, Backends)."""

    def check(kernel_fn: Callable, reference_fn: Callable, inputs, dtype, device: str) -> None:
        before = len(poisoned_buffers)
        fast, grad_out = _run(kernel_fn, inputs, None, dtype, device)
        assert len(poisoned_buffers) > before, "the kernel path allocated no poisoned buffer"
        plain, _ = _run(reference_fn, inputs, grad_out, dtype, device)
        exact, _ = _run(reference_fn, inputs, grad_out, torch.float64, device)
        names = ["output"] + [f"grad[{i}]" for i in range(len(exact) - 1)]
        for name, f, p, e in zip(names, fast, plain, exact, strict=True):
            assert not torch.isnan(f).any(), f"{name}: NaN (an element was never written?)"
            err_fast = (f.double() - e).abs().max().item() if e.numel() else 0.0
            err_plain = (p.double() - e).abs().max().item() if e.numel() else 0.0
            scale = e.abs().max().item() if e.numel() else 0.0
            factor = RULE_FACTOR_OUTPUT if name == "output" else RULE_FACTOR_GRAD
            ok = (
                err_fast <= TOLERANCE[dtype] * max(scale, SCALE_FLOOR)
                or err_fast <= factor * err_plain
            )
            assert ok, (
                f"{name} ({dtype}): kernel error {err_fast:.3e} vs fp64 exceeds "
                f"{TOLERANCE[dtype]:g} x scale {scale:.3e} and {factor:g} x PyTorch's {err_plain:.3e}"
            )

    return check
