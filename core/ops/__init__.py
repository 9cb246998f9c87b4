"""Functional attention ops — the public API of the core.

Every op has a readable PyTorch reference and, where it pays, a Triton kernel; ``backend=`` (or the
``MANYHEADS_BACKEND`` environment variable) chooses between them. Dense ops use ``[B, H, L, D]``; packed
ops use ``[T, H, D]`` + ``cu_seqlens``. Boolean masks mean True = may attend. Checks that read values
(NaN/inf, offsets) run on CPU tensors, and on GPU tensors only under :func:`debug_checks` or
``MANYHEADS_DEBUG=1``. The naive formulas the ops are tested against live in :mod:`core.ops.naive`.
"""

from core.ops._checks import checked_already, debug_checks, value_checks_enabled
from core.ops._segments import pad_segments, segment_ids
from core.ops.attention import attention, causal_mask
from core.ops.backend import resolve_backend
from core.ops.pointer_attention import pointer_attention
from core.ops.relative_attention import relative_attention
from core.ops.scattered_linear_attention import scattered_linear_attention
from core.ops.segment_softmax import attention_pool, segment_softmax
from core.ops.varlen_attention import varlen_attention

__all__ = [
    "attention",
    "attention_pool",
    "causal_mask",
    "checked_already",
    "debug_checks",
    "pad_segments",
    "pointer_attention",
    "relative_attention",
    "resolve_backend",
    "scattered_linear_attention",
    "segment_ids",
    "segment_softmax",
    "value_checks_enabled",
    "varlen_attention",
]
