"""Shared benchmark helpers: median wall time (``torch.utils.benchmark``), peak memory, markdown tables.

Peak memory is measured per case in a fresh process (see :func:`peak_mib`): each benchmark module builds
its cases from a name, so ``python -m benchmarks.<name> --peak CASE`` runs one of them alone.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.utils.benchmark as tbench

THREADS = 2  # the reference machine: 2 CPU cores
REPOSITORY = Path(__file__).resolve().parents[1]  # where ``python -m benchmarks.<name>`` resolves


def median_ms(fn: Callable[[], object], min_run_time: float = 1.0) -> float:
    """Median milliseconds per call over repeated runs (after a warm-up call)."""
    fn()
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=THREADS)
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def peak_mib(script: str, case: str) -> float:
    """Extra peak memory (MiB) of one call of ``case`` from the benchmark module whose file is
    ``script`` (pass its ``__file__``), run alone in a fresh ``python -m benchmarks.<name>`` process.

    On the CPU this is the resident-set high-water mark during the call (reset just before it, the inputs
    being built first) minus the resident set before it; a fresh process keeps allocator caches of earlier
    cases out of it (and forking a process whose OpenMP pool has run can deadlock).
    """
    module = f"{__package__}.{Path(script).stem}"
    result = subprocess.run(
        [sys.executable, "-m", module, "--peak", case],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPOSITORY,
    )
    return float(result.stdout.strip().splitlines()[-1])


def cuda_peak_mib(fn: Callable[[], object]) -> float:
    """Extra peak CUDA memory (MiB) of one call of ``fn``, from the caching allocator's statistics."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def report_peak(fn: Callable[[], object]) -> None:
    """Child side of :func:`peak_mib`: print the extra peak memory (MiB) of one call of ``fn``."""
    torch.set_num_threads(THREADS)
    before = _resident_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the high-water mark VmHWM to now
    fn()
    print((_resident_kib("VmHWM") - before) / 1024)


def _resident_kib(field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (its high-water mark) from ``/proc/self/status``, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status: peak memory needs Linux")


def serve_peak_request(build: Callable[[str], Callable[[], object]]) -> bool:
    """When the module runs with ``--peak CASE`` (from :func:`peak_mib`), measure ``build(CASE)``,
    print the result and return True; otherwise set the thread count and return False."""
    torch.set_num_threads(THREADS)
    if "--peak" not in sys.argv:
        return False
    report_peak(build(sys.argv[sys.argv.index("--peak") + 1]))
    return True


def backward_step(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> Callable[[], None]:
    """A closure running ``fn(*inputs)`` forward and backward (all-ones output gradient), then
    clearing the inputs' gradients so repeated calls measure the same work."""

    def run() -> None:
        out = fn(*inputs)
        out.backward(torch.ones_like(out))
        for t in inputs:
            t.grad = None

    return run


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def fmt(x: object) -> str:
        return f"{x:.3g}" if isinstance(x, float) else str(x)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)
