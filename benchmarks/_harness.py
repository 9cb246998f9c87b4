"""Shared benchmark helpers: median wall time (``torch.utils.benchmark``), peak memory, markdown tables.

Peak memory is measured per case in a fresh process (see :func:`peak_mib`): each benchmark module builds
its cases from a name, so ``python -m benchmarks.<name> --peak CASE`` runs one of them alone.
Timings are only as good as the machine is idle: :class:`MachineLoad` records the load around a table and
says when its numbers must not be recorded.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.utils.benchmark as tbench

THREADS = 2  # the reference machine: 2 CPU cores
REPOSITORY = Path(__file__).resolve().parents[1]  # where ``python -m benchmarks.<name>`` resolves
IDLE_LOAD = 0.5  # 1-minute load average of an idle machine, at most
IDLE_OTHER_CORES = 0.1  # CPU other processes may use during a table (cores on average), at most


def median_ms(fn: Callable[[], object], min_run_time: float = 1.0) -> float:
    """Median milliseconds per call over repeated runs (after a warm-up call)."""
    fn()
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=THREADS)
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def alternating_median_s(
    cases: Mapping[str, Callable[[], object]], rounds: int
) -> dict[str, float]:
    """Median seconds per call of each case, the cases called in turn ``rounds`` times (after one
    warm-up call each), so that a change in the machine's speed reaches them all alike."""
    for fn in cases.values():
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in seconds.items()}


@dataclass
class MachineLoad:
    """The load around one table: 1-minute load averages before and after it, what this process's
    own threads explain of the one after, and the CPU other processes used meanwhile (from
    ``/proc/stat``: busy and stolen time of the whole machine minus this process and its children)."""

    before: float
    after: float
    own_share: float  # of ``after``: what the load average would be if only this process had run
    other_cores: float  # other processes' CPU use during the table, in cores (NaN without /proc)

    @property
    def idle(self) -> bool:
        """Whether the table's timings may be recorded."""
        others_quiet = math.isnan(self.other_cores) or self.other_cores <= IDLE_OTHER_CORES
        return others_quiet and self.after <= self.own_share + IDLE_LOAD

    def report(self) -> str:
        others = "unknown" if math.isnan(self.other_cores) else f"{self.other_cores:.2f}"
        line = (
            f"machine load: 1-minute average {self.before:.2f} before, {self.after:.2f} after "
            f"(this run alone would leave {self.own_share:.2f}); other processes used {others} "
            "cores meanwhile"
        )
        if self.idle:
            return line
        return line + "\nLOADED MACHINE — do not record these numbers; rerun on an idle machine"


@contextmanager
def watch_load() -> Iterator[list[MachineLoad]]:
    """Measure :class:`MachineLoad` around the block; the list it yields holds it afterwards."""
    result: list[MachineLoad] = []
    before, busy, own, start = os.getloadavg()[0], _machine_busy_s(), _own_cpu_s(), time.time()
    yield result
    elapsed = max(time.time() - start, 1e-9)
    decay = math.exp(-elapsed / 60.0)  # the kernel's 1-minute average, sampled continuously
    own_cores = (_own_cpu_s() - own) / elapsed
    other = (_machine_busy_s() - busy - (_own_cpu_s() - own)) / elapsed
    after = os.getloadavg()[0]
    result.append(MachineLoad(before, after, before * decay + own_cores * (1 - decay), other))


def _own_cpu_s() -> float:
    """CPU seconds of this process (all threads) and its finished children (peak-memory runs)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy or stolen by the hypervisor, from ``/proc/stat``
    (NaN where it is missing)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return math.nan
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def peak_mib(script: str, case: str, extra_args: Sequence[str] = ()) -> float:
    """Extra peak memory (MiB) of one call of ``case`` from the benchmark module whose file is
    ``script`` (pass its ``__file__``), run alone in a fresh ``python -m benchmarks.<name>`` process
    (with ``extra_args`` after ``--peak CASE``).

    On the CPU this is the resident-set high-water mark during the call (reset just before it, the inputs
    being built first) minus the resident set before it; a fresh process keeps allocator caches of earlier
    cases out of it (and forking a process whose OpenMP pool has run can deadlock).
    """
    module = f"{__package__}.{Path(script).stem}"
    result = subprocess.run(
        [sys.executable, "-m", module, "--peak", case, *extra_args],
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


def peer_arguments(
    description: str,
    peer: str,
    rounds: int,
    build: Callable[[str, Path | None], Callable[[], object]],
) -> tuple[argparse.Namespace, list[str]] | None:
    """The command line of a benchmark against a peer: ``--peer PATH`` (a checkout of ``peer``),
    ``--rounds`` (alternating timed calls per case) and the hidden ``--peak CASE`` of
    :func:`peak_mib`. Returns the arguments and the extra arguments a peak-memory child needs, or
    None when this process only served a ``--peak`` request (``build(case, peer_path)``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--peer", type=Path, help=f"a checkout of {peer}")
    parser.add_argument(
        "--rounds", type=int, default=rounds, help="alternating timed calls per case"
    )
    parser.add_argument("--peak", help=argparse.SUPPRESS)  # one case, in a fresh process
    args = parser.parse_args()
    if serve_peak_request(lambda case: build(case, args.peer)):
        return None
    return args, ["--peer", str(args.peer)] if args.peer else []
