"""Recording the attention of a model's core modules without changing the model's code.

``with record(model) as recording:`` puts a :class:`Recording` in ``core.nn.attention.RECORDER``; every
:class:`~core.nn.MultiHeadAttention` (dense, masked, causal, relative, packed), ``PointerAttention`` and
``AttentionPool`` inside ``model`` then hands it its inputs, and it computes the output through a
reference path that materialises the weights one block of queries at a time (:mod:`core.inspect.blocks`),
adds their statistics and, in ``"weights"`` mode, keeps them. Outside the context the slot is None and the
modules run their ops (Triton kernels included) as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from core.inspect.attend import attend, column_means
from core.inspect.blocks import DistanceBlocks, ScoreBlocks, coordinates_fit, distance_blocks
from core.inspect.kept import AttentionBatch, WeightLimits, check_limits
from core.inspect.packed import segment_buckets
from core.inspect.redistribute import Redistribution, redistribute
from core.inspect.sequence import OpenSequence
from core.inspect.stats import (
    TOP_K,
    HeadStatistics,
    StatisticsAccumulator,
    write_statistics_csv,
)
from core.nn import AttentionPool, MultiHeadAttention, PointerAttention
from core.nn.attention import RECORDER
from core.ops import attention, attention_pool, pointer_attention, relative_attention
from core.ops import varlen_attention as varlen_attention_op

Mode = Literal["stats", "weights"]
INSPECTED = (MultiHeadAttention, PointerAttention, AttentionPool)


@dataclass
class LayerRecord:
    """Everything recorded for one module."""

    name: str
    kind: type[nn.Module]
    statistics: StatisticsAccumulator
    batches: list[AttentionBatch] = field(default_factory=list)
    open: OpenSequence | None = None


class Recording:
    """The attention of the inspected modules of ``model`` in the forwards run while it is active.

    Args:
        model: its ``named_modules()`` (read once, here) name the layers.
        mode: ``"stats"`` keeps only per-head statistics; ``"weights"`` also keeps the weights
            (:attr:`weights`), within ``limits``.
        top_k: k of the top-k mass statistic.
        limits: bounds of ``"weights"`` mode; exceeding one raises :class:`WeightLimitError`.
        redistribution: when set, the chosen heads' weights are redistributed away from their sinks
            and the modules' outputs computed from the new weights (:mod:`core.inspect.redistribute`).
        positions: coordinates of the tokens for ``mean_distance`` in the app's units: ``[B, L, C]`` or
            ``[L, C]`` for dense input, ``[T, C]`` for packed input. Used by self-attention layers
            whose length matches (others report no distance); None: distances in positions ``|i − j|``.
            Set :attr:`positions` before each batch when it changes.

    It is a context manager (``with Recording(model) as rec:``, or :func:`record`) and can be started
    and stopped repeatedly (:meth:`start`, :meth:`stop`); results accumulate. Recordings do not nest,
    and the slot is process-wide: record one model at a time.
    """

    def __init__(
        self,
        model: nn.Module,
        mode: Mode = "stats",
        *,
        top_k: int = TOP_K,
        limits: WeightLimits | None = None,
        redistribution: Redistribution | None = None,
        positions: torch.Tensor | None = None,
    ) -> None:
        if mode not in ("stats", "weights"):
            raise ValueError(f"mode must be 'stats' or 'weights', got {mode!r}")
        if top_k < 1:
            raise ValueError(f"top_k must be ≥ 1, got {top_k}")
        self.keep_weights = mode == "weights"
        self.limits = limits or WeightLimits()
        self.redistribution = redistribution
        self.positions = positions
        self.batches: list[object] = []
        self.layers = {
            id(module): LayerRecord(name, type(module), StatisticsAccumulator(top_k))
            for name, module in model.named_modules()
            if isinstance(module, INSPECTED)
        }

    # --- context ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Make this the active recorder."""
        if RECORDER.active is not None and RECORDER.active is not self:
            raise RuntimeError("another Recording is active: recordings do not nest")
        RECORDER.active = self

    def stop(self) -> None:
        """Stop recording (finishing any open decoding sequence); results stay readable."""
        if RECORDER.active is self:
            RECORDER.active = None
        for layer in self.layers.values():
            self._close(layer)

    def __enter__(self) -> Recording:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def begin_batch(self, batch: object) -> None:
        """Note the inputs of the forwards that follow, when keeping weights: kept batches carry its
        index in :attr:`batches` (so a drawing can show the instances); decoding sequences end here."""
        for layer in self.layers.values():
            self._close(layer)
        if self.keep_weights:
            self.batches.append(batch)

    # --- results ---------------------------------------------------------------------------------

    def statistics(self) -> dict[str, HeadStatistics]:
        """Per-layer statistics of what was recorded (layers that ran), in module order."""
        return {
            layer.name: layer.statistics.result()
            for layer in self.layers.values()
            if layer.statistics.sums
        }

    @property
    def weights(self) -> dict[str, list[AttentionBatch]]:
        """Kept weights per layer (``"weights"`` mode)."""
        return {layer.name: layer.batches for layer in self.layers.values() if layer.batches}

    def layer_names(self, kind: type[nn.Module] | None = None) -> list[str]:
        """Names of the inspected layers, or of those that are ``kind`` (e.g. ``PointerAttention``)."""
        return [
            layer.name
            for layer in self.layers.values()
            if kind is None or issubclass(layer.kind, kind)
        ]

    def write_csv(self, path: Path) -> Path:
        """Write :meth:`statistics` as the tidy CSV ``layer, head, statistic, value``."""
        return write_statistics_csv(self.statistics(), path)

    # --- the recorder protocol of core.nn.attention ------------------------------------------------

    def attention(
        self,
        module: nn.Module,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        mask: torch.Tensor | None,
        bias: torch.Tensor | None,
        causal: bool,
        self_attention: bool,
    ) -> torch.Tensor:
        """Dense attention ``[N, H, L, D]`` (``core.ops.attention``), recorded."""
        layer = self.layers.get(id(module))
        if layer is None:
            return attention(q, k, v, mask=mask, bias=bias, causal=causal, backend=module.backend)
        blocks = ScoreBlocks(q, k, mask=mask, bias=bias, causal=causal)
        return self._dense(layer, blocks, v, self_attention)

    def relative_attention(
        self,
        module: nn.Module,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        rel_emb: torch.Tensor,
        *,
        causal: bool,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Music Transformer attention (``core.ops.relative_attention``), recorded."""
        layer = self.layers.get(id(module))
        if layer is None:
            return relative_attention(
                q, k, v, rel_emb, causal=causal, mask=mask, backend=module.backend
            )
        blocks = ScoreBlocks(q, k, mask=mask, causal=causal, rel_emb=rel_emb, causal_table=causal)
        return self._dense(layer, blocks, v, self_attention=True)

    def varlen_attention(
        self,
        module: nn.Module,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        cu_seqlens: torch.Tensor,
        *,
        cu_seqlens_k: torch.Tensor | None,
        causal: bool,
        self_attention: bool,
    ) -> torch.Tensor:
        """Packed attention ``[T, H, D]`` (``core.ops.varlen_attention``), recorded per segment.

        Segments are grouped by length (multiples of 16) and each group is padded into one dense
        batch whose key and query padding is masked, so every segment is its own instance and its
        rows are normalised by its own number of keys.
        """
        layer = self.layers.get(id(module))
        if layer is None:
            return varlen_attention_op(
                q,
                k,
                v,
                cu_seqlens,
                cu_seqlens_k=cu_seqlens_k,
                causal=causal,
                backend=module.backend,
            )
        cu_k = cu_seqlens if cu_seqlens_k is None else cu_seqlens_k
        len_q, len_k = cu_seqlens.diff().long(), cu_k.diff().long()
        start_q, start_k = cu_seqlens[:-1].long(), cu_k[:-1].long()
        keep = self.keep_weights and self._check_limits(
            layer, int(len_q.max()) if len_q.numel() else 0
        )
        positions = self.positions
        if positions is not None and (positions.dim() != 2 or positions.shape[0] != q.shape[0]):
            positions = None
            self_attention = False  # coordinates that do not fit: no distance rather than |i − j|
        dtype = torch.promote_types(q.dtype, torch.float32)
        out = q.new_zeros(q.shape[0], q.shape[1], v.shape[2], dtype=dtype)
        kept: dict[int, torch.Tensor] = {}
        for bucket in segment_buckets(len_q, len_k, start_q, start_k):
            rows_q, rows_k, valid_q = bucket.rows_q, bucket.rows_k, bucket.valid_q
            mask = valid_q[:, None, :, None] & bucket.valid_k[:, None, None, :]
            blocks = ScoreBlocks(
                q[rows_q].transpose(1, 2), k[rows_k].transpose(1, 2), mask=mask, causal=causal
            )
            distance = None
            if self_attention:
                padded = None if positions is None else positions[rows_q]
                distance = distance_blocks(padded, rows_q.shape[1], q.device)
            out_b, kept_b = self._attend(layer, blocks, v[rows_k].transpose(1, 2), distance, keep)
            out[rows_q[valid_q]] = out_b.transpose(1, 2)[valid_q]
            if kept_b is not None:
                for i, segment in enumerate(bucket.segments.tolist()):
                    kept[segment] = kept_b[i, :, : len_q[segment], : len_k[segment]]
        if keep:
            instances = [
                kept.get(s, torch.zeros(q.shape[1], 0, int(len_k[s]))) for s in range(len_q.numel())
            ]
            layer.batches.append(AttentionBatch(instances, 1, self._batch_index()))
        return out.to(q.dtype)

    def pointer_attention(
        self,
        module: nn.Module,
        query: torch.Tensor,
        keys: torch.Tensor,
        v: torch.Tensor,
        *,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Pointer logits (``core.ops.pointer_attention``) and their softmax over ``[EOS, points…]``,
        recorded with one head. Single-step calls ``[B, A]`` on the same ``keys`` tensor (a decoding)
        join into one batch of queries; a teacher-forced ``[B, T, A]`` call is a batch of its own.
        With redistribution the logits returned are ``log`` of the new weights."""
        logits = pointer_attention(query, keys, v, mask=mask, backend="reference")
        layer = self.layers.get(id(module))
        if layer is None:
            return logits
        single_step = query.dim() == 2
        rows = logits.unsqueeze(1) if single_step else logits  # [B, T, N + 1]
        weights = torch.softmax(rows, -1).unsqueeze(1)  # [B, 1, T, N + 1]
        n_allowed = torch.isfinite(rows).sum(-1).unsqueeze(1)
        sequence = self._sequence(layer, keys if single_step else None, weights.shape, keys.device)
        changed = self._redistribute(layer, weights, lambda: weights.detach().mean(-2))
        self._add(layer, sequence, changed.detach(), n_allowed)
        if not single_step:
            self._finish(layer, sequence)
        if changed is weights:
            return logits
        new_logits = changed.squeeze(1).log()
        return new_logits.squeeze(1) if single_step else new_logits

    def attention_pool(
        self,
        module: nn.Module,
        scores: torch.Tensor,
        values: torch.Tensor,
        cu_seqlens: torch.Tensor,
        *,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention pooling (``core.ops.attention_pool``), recorded with the K branches as heads and
        each bag as an instance with one query over its instances."""
        pooled, weights = attention_pool(scores, values, cu_seqlens, mask=mask, backend="reference")
        layer = self.layers.get(id(module))
        if layer is None:
            return pooled, weights
        lengths = cu_seqlens.diff().long()
        bag = torch.repeat_interleave(torch.arange(lengths.numel(), device=weights.device), lengths)
        slot = torch.arange(weights.shape[0], device=weights.device) - cu_seqlens.long()[bag]
        width = int(lengths.max()) if lengths.numel() else 0
        padded = weights.new_zeros(lengths.numel(), width, weights.shape[1])
        padded = padded.index_put((bag, slot), weights).transpose(1, 2).unsqueeze(2)  # [N, K, 1, W]
        visible = torch.ones_like(weights, dtype=torch.bool) if mask is None else mask
        n_allowed = visible.new_zeros(padded.shape[:2], dtype=torch.long).index_add_(
            0, bag, visible.long()
        )
        changed = self._redistribute(layer, padded, lambda: padded.detach().squeeze(2))
        sequence = self._sequence(layer, None, padded.shape, padded.device)
        self._add(layer, sequence, changed.detach(), n_allowed.unsqueeze(-1))
        self._finish(layer, sequence, key_lengths=lengths)
        if changed is padded:
            return pooled, weights
        new_weights = changed.squeeze(2).transpose(1, 2)[bag, slot]  # [T, K]
        per_branch = values.unsqueeze(1) if values.dim() == 2 else values
        pooled = torch.zeros_like(pooled).index_add(0, bag, new_weights.unsqueeze(-1) * per_branch)
        return pooled, new_weights

    # --- internals -------------------------------------------------------------------------------

    def _dense(
        self, layer: LayerRecord, blocks: ScoreBlocks, v: torch.Tensor, self_attention: bool
    ) -> torch.Tensor:
        """Record one dense call; its distances are ``|i − j|`` or from :attr:`positions`."""
        n, _, len_q, len_k = blocks.shape
        keep = self.keep_weights and self._check_limits(layer, len_q)
        positions, distance = self.positions, None
        if self_attention and positions is None:
            distance = distance_blocks(None, len_k, v.device)
        elif self_attention and coordinates_fit(positions, n, len_q):
            distance = distance_blocks(positions, len_k, v.device)
        out, kept = self._attend(layer, blocks, v, distance, keep)
        if kept is not None:
            layer.batches.append(AttentionBatch(list(kept.unbind(0)), 1, self._batch_index()))
        return out.to(v.dtype)

    def _attend(
        self,
        layer: LayerRecord,
        blocks: ScoreBlocks,
        v: torch.Tensor,
        distance: DistanceBlocks | None,
        keep: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:func:`~core.inspect.attend.attend` with this layer's statistics and sinks."""
        n_heads, n_keys = blocks.shape[1], blocks.shape[3]
        sink = self._sinks(layer, n_heads, n_keys, v.device, lambda: column_means(blocks))
        fraction = self.redistribution.fraction if sink is not None else 0.0
        return attend(
            blocks, v, layer.statistics, distance=distance, sink=sink, fraction=fraction, keep=keep
        )

    def _sinks(
        self,
        layer: LayerRecord,
        n_heads: int,
        n_keys: int,
        device: torch.device,
        column_means: Callable[[], torch.Tensor],
    ) -> torch.Tensor | None:
        """The sink mask of this call under :attr:`redistribution`, or None (nothing to change)."""
        if self.redistribution is None:
            return None
        heads = self.redistribution.chosen_heads(layer.name, n_heads)
        if heads is None:
            return None
        means = column_means() if self.redistribution.sink_keys is None else None
        return self.redistribution.sinks(heads, n_keys, means).to(device)

    def _redistribute(
        self, layer: LayerRecord, weights: torch.Tensor, column_means: Callable[[], torch.Tensor]
    ) -> torch.Tensor:
        """``weights`` ``[N, H, c, Lk]`` redistributed, or the same tensor when nothing changes."""
        n_heads, n_keys = weights.shape[1], weights.shape[-1]
        sink = self._sinks(layer, n_heads, n_keys, weights.device, column_means)
        if sink is None:
            return weights
        return redistribute(weights, sink, self.redistribution.fraction)

    def _sequence(
        self,
        layer: LayerRecord,
        keys: torch.Tensor | None,
        shape: torch.Size,
        device: torch.device,
    ) -> OpenSequence:
        """The open decoding of ``keys`` if it continues, else a new batch (kept open when ``keys``
        is given, i.e. for single-step calls)."""
        if keys is not None and layer.open is not None and layer.open.keys is keys:
            return layer.open
        self._close(layer)
        keep = self.keep_weights and self._check_limits(layer, 0)
        sequence = OpenSequence.empty(keys, shape, device, keep)
        if keys is not None:
            layer.open = sequence
        return sequence

    def _add(
        self,
        layer: LayerRecord,
        sequence: OpenSequence,
        weights: torch.Tensor,
        n_allowed: torch.Tensor,
    ) -> None:
        """Add one call's weights ``[N, H, c, Lk]`` to ``sequence`` (within the weight limits)."""
        if sequence.kept is not None:
            self._check_limits(layer, sequence.queries + weights.shape[2], new_batch=False)
        sequence.add(layer.statistics, weights, n_allowed)

    def _finish(
        self, layer: LayerRecord, sequence: OpenSequence, key_lengths: torch.Tensor | None = None
    ) -> None:
        """Close a batch: its sinks, and its kept weights as one :class:`AttentionBatch`."""
        instances = sequence.finish(layer.statistics, key_lengths)
        if instances is not None:
            layer.batches.append(AttentionBatch(instances, sequence.calls, self._batch_index()))

    def _close(self, layer: LayerRecord) -> None:
        if layer.open is not None:
            sequence, layer.open = layer.open, None
            self._finish(layer, sequence)

    def _batch_index(self) -> int | None:
        return len(self.batches) - 1 if self.batches else None

    def _check_limits(self, layer: LayerRecord, queries: int, new_batch: bool = True) -> bool:
        """Raise :class:`WeightLimitError` if keeping this batch of ``layer`` breaks a limit."""
        kept_layers = sum(bool(other.batches) for other in self.layers.values())
        check_limits(self.limits, layer.name, len(layer.batches), kept_layers, queries, new_batch)
        return True


def record(model: nn.Module, mode: Mode = "stats", **options: Any) -> Recording:
    """``with record(model) as recording:`` — record the attention of ``model``'s core modules in the
    forwards run inside the block; ``options`` as :class:`Recording` (``top_k``, ``limits``,
    ``redistribution``, ``positions``)."""
    return Recording(model, mode, **options)


@contextmanager
def paused() -> Iterator[Recording | None]:
    """Suspend the active recording, if any, for the forwards inside the block, and yield it (None
    when nothing records). For work whose attention an app records otherwise: a step-by-step
    generation, recorded afterwards as one teacher-forced pass over what it generated (with a causal
    decoder, step t of that pass attends exactly as the generation did when it chose token t + 1)."""
    active = RECORDER.active
    RECORDER.active = None
    try:
        yield active
    finally:
        RECORDER.active = active
