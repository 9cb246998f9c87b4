"""Shared benchmark helpers: median wall time (``torch.utils.benchmark``), peak memory, markdown tables.

CPU peak memory is the rise of the resident-set high-water mark while ``fn`` runs once in a forked child
(the inputs already exist before the fork), so allocator caches of earlier runs do not blur it.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
from collections.abc import Callable, Sequence

import torch
import torch.utils.benchmark as tbench

THREADS = 2  # the reference machine: 2 CPU cores


def median_ms(fn: Callable[[], object], min_run_time: float = 1.0) -> float:
    """Median milliseconds per call over repeated runs (after a warm-up call)."""
    fn()
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=THREADS)
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def _child_peak(fn: Callable[[], object], conn) -> None:
    torch.set_num_threads(THREADS)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    conn.send(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    conn.close()


def peak_mib(fn: Callable[[], object]) -> float:
    """Extra peak resident memory (MiB) of one call of ``fn`` on the CPU, measured in a forked child."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    ctx = mp.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_peak, args=(fn, send))
    child.start()
    kib = receive.recv()
    child.join()
    return kib / 1024


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def fmt(x: object) -> str:
        return f"{x:.3g}" if isinstance(x, float) else str(x)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)
