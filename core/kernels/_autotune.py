"""The one place autotune config lists go through, so the Triton interpreter sees a single config.

Under ``TRITON_INTERPRET=1`` (Triton 3.9) benchmarking more than one config fails with "0 active
drivers", and tuning would be meaningless anyway; :func:`autotune` then uses ``interpreter_config``, chosen
for tiny CPU test shapes (big enough blocks to keep the per-program overhead down, small enough that odd
lengths still span several blocks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import triton

from core.ops.backend import triton_interpreted


def autotune(
    gpu_configs: Sequence[triton.Config],
    interpreter_config: triton.Config,
    key: list[str],
    reset_to_zero: list[str] | None = None,
) -> Callable:
    """``triton.autotune`` over ``gpu_configs`` on a GPU; only ``interpreter_config`` under the interpreter.

    ``reset_to_zero`` names buffers a kernel accumulates into with atomics: each benchmarking run must
    start from zeros or the tuned launch would add to the trial runs' sums.
    """
    configs = [interpreter_config] if triton_interpreted() else list(gpu_configs)
    return triton.autotune(configs=configs, key=key, reset_to_zero=reset_to_zero)
