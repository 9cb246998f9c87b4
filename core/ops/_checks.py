"""Input validation shared by the ops: run once at the edge, with errors that name the argument."""

from __future__ import annotations

import torch


def check_rank(name: str, x: torch.Tensor, rank: int, layout: str) -> None:
    """Raise unless ``x`` has ``rank`` dimensions (``layout`` names them, e.g. ``"[B, H, L, D]"``)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != rank:
        raise ValueError(f"{name} must be {layout} ({rank}-D), got shape {tuple(x.shape)}")


def check_floating(name: str, x: torch.Tensor) -> None:
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def check_finite(name: str, x: torch.Tensor) -> None:
    """NaN or inf in an input would poison every softmax row it reaches: refuse it here.

    One ``aminmax`` pass (NaN propagates into both, ±inf shows in one) costs ~5× less than
    ``isfinite(x).all()``, which writes a boolean copy of ``x``; the slow search runs only on failure.
    """
    if x.numel() and not torch.isfinite(torch.stack(torch.aminmax(x))).all():
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise ValueError(
            f"{name} contains NaN or inf (first at index {bad}); clean the input first"
        )


def check_same(what: str, **sizes: int) -> None:
    """Raise unless all named sizes agree, e.g. ``check_same("heads", q=4, k=4, v=2)``."""
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{k}={v}" for k, v in sizes.items())
        raise ValueError(f"mismatched {what}: {listed}")


def check_mask(name: str, mask: torch.Tensor, target: tuple[int, ...]) -> None:
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


def check_cu_seqlens(cu_seqlens: torch.Tensor, total: int, name: str = "cu_seqlens") -> None:
    """``cu_seqlens`` is int32 ``[N+1]``, starts at 0, never decreases and ends at ``total`` (T)."""
    check_rank(name, cu_seqlens, 1, "[N+1]")
    if cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{name} must be int32 (or int64), got dtype {cu_seqlens.dtype}")
    if cu_seqlens.numel() < 1:
        raise ValueError(f"{name} must hold at least one offset (0), got an empty tensor")
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
