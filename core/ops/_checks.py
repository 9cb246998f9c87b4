"""Input validation shared by the ops: run once at the edge, with errors that name the argument.

Shape and dtype checks always run. Checks that read tensor *values* (NaN/inf, ``cu_seqlens`` offsets,
"every row keeps a key") force a device→host copy on a GPU, which stalls the stream on every call; they
run only where that costs nothing (CPU tensors) or when asked for: environment variable
``MANYHEADS_DEBUG=1`` or inside ``with core.ops.debug_checks():``.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from contextvars import ContextVar

import torch
from torch import Tensor

DEBUG_ENV_VAR = "MANYHEADS_DEBUG"
_debug_requested: ContextVar[bool] = ContextVar("manyheads_debug_checks", default=False)
_checked_already: ContextVar[tuple[Tensor, ...]] = ContextVar("manyheads_checked", default=())


@contextlib.contextmanager
def debug_checks() -> Iterator[None]:
    """Within this block, value checks run on every device (also GPU tensors, at the cost of a sync)."""
    token = _debug_requested.set(True)
    try:
        yield
    finally:
        _debug_requested.reset(token)


@contextlib.contextmanager
def checked_already(*tensors: Tensor) -> Iterator[None]:
    """Within this block the ops skip the value checks of these tensors (the very objects): for a
    caller that checked their values itself. A decoding step passes its whole key/value cache to
    the op, and re-reading every cached entry at every step would cost O(L) a token for entries
    that were checked once, as they were added (:meth:`core.nn.KVCache.append`)."""
    token = _checked_already.set(_checked_already.get() + tensors)
    try:
        yield
    finally:
        _checked_already.reset(token)


def value_checks_enabled(x: Tensor) -> bool:
    """True when checks that read the values of ``x`` should run: ``x`` is on the CPU (reading it is
    free) and not under :func:`checked_already`, or the debug switch is on (``MANYHEADS_DEBUG=1`` or
    :func:`debug_checks`)."""
    if _debug_requested.get() or os.environ.get(DEBUG_ENV_VAR, "0") == "1":
        return True
    return x.device.type == "cpu" and not any(x is t for t in _checked_already.get())


def check_rank(name: str, x: Tensor, rank: int, layout: str) -> None:
    """Raise unless ``x`` has ``rank`` dimensions (``layout`` names them, e.g. ``"[B, H, L, D]"``)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != rank:
        raise ValueError(f"{name} must be {layout} ({rank}-D), got shape {tuple(x.shape)}")


def check_floating(name: str, x: Tensor) -> None:
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def check_finite(name: str, x: Tensor) -> None:
    """NaN or inf in an input would poison every softmax row it reaches: refuse it here (a value check).

    One sum read on the host (NaN and ±inf propagate into it) costs far less than
    ``isfinite(x).all()``, which writes a boolean copy of ``x``, and about half an ``aminmax``, which
    copies a strided ``x`` (a view of a key/value cache) first; two ops, where a decoding step checks
    18 inputs. A sum that is not finite may be an overflow of finite values: ``aminmax`` decides
    then, and the slow search runs only on failure.
    """
    if not value_checks_enabled(x) or not x.numel():
        return
    if math.isfinite(x.sum(dtype=torch.promote_types(x.dtype, torch.float32)).item()):
        return
    if not torch.isfinite(torch.stack(torch.aminmax(x))).all():
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise ValueError(
            f"{name} contains NaN or inf (first at index {bad}); clean the input first"
        )


def check_same(what: str, **sizes: object) -> None:
    """Raise unless all named sizes agree, e.g. ``check_same("heads", q=4, k=4, v=2)``."""
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{k}={v}" for k, v in sizes.items())
        raise ValueError(f"mismatched {what}: {listed}")


def check_attention_inputs(q: Tensor, k: Tensor, v: Tensor, layout: str, length_dim: int) -> None:
    """Checks every softmax-style op shares: rank (``layout``, e.g. ``"[B, H, L, D]"``), float dtype,
    finite values, and agreeing heads (dim 1), head dims (q, k: last dim), key lengths (k, v:
    ``length_dim``) and dtypes."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_rank(name, x, len(layout.split(",")), layout)
        check_floating(name, x)
        check_finite(name, x)
    check_same("heads", q=q.shape[1], k=k.shape[1], v=v.shape[1])
    check_same("key lengths", k=k.shape[length_dim], v=v.shape[length_dim])
    check_same("head dims", q=q.shape[-1], k=k.shape[-1])
    check_same("dtypes", q=q.dtype, k=k.dtype, v=v.dtype)


def check_mask(name: str, mask: Tensor, target: tuple[int, ...]) -> None:
    """A boolean mask (True = may attend) must broadcast to ``target``."""
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must be boolean (True = may attend), got dtype {mask.dtype}")
    try:
        torch.broadcast_shapes(tuple(mask.shape), target)
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(mask.shape)} does not broadcast to {target}"
        ) from None
    if mask.dim() > len(target):
        raise ValueError(f"{name} has {mask.dim()} dims, more than the {len(target)} of {target}")


def check_cu_seqlens(cu_seqlens: Tensor, total: int, name: str = "cu_seqlens") -> None:
    """``cu_seqlens`` is int32 ``[N+1]``, starts at 0, never decreases and ends at ``total`` (T); the
    three value conditions are value checks (see :func:`value_checks_enabled`)."""
    check_rank(name, cu_seqlens, 1, "[N+1]")
    if cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{name} must be int32 (or int64), got dtype {cu_seqlens.dtype}")
    if cu_seqlens.numel() < 1:
        raise ValueError(f"{name} must hold at least one offset (0), got an empty tensor")
    if not value_checks_enabled(cu_seqlens):
        return
    first, last = int(cu_seqlens[0]), int(cu_seqlens[-1])
    if first != 0:
        raise ValueError(f"{name} must start at 0, got {first}")
    if last != total:
        raise ValueError(f"{name} must end at the number of packed tokens T={total}, got {last}")
    steps = cu_seqlens.diff()
    if (steps < 0).any():
        where = int((steps < 0).nonzero()[0])
        raise ValueError(
            f"{name} must be non-decreasing; it drops from {int(cu_seqlens[where])} to "
            f"{int(cu_seqlens[where + 1])} at position {where + 1}"
        )
