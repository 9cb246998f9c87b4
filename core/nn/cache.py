"""Key/value cache for incremental decoding: a decoder that generates N tokens one at a time computes
each token's keys and values once, so the whole generation costs O(N·L) attention work rather than
re-running the prefix (O(N·L²))."""

from __future__ import annotations

import torch

from core.ops._checks import check_finite


class KVCache:
    """Keys and values of the tokens decoded so far, for one decoder layer.

    Buffers ``[B, H, capacity, d_head]`` are allocated once and filled from the left; ``length`` is
    the number of cached positions, i.e. the absolute position of the next token. ``context`` holds a
    cross-attention's projected keys and values of the encoder memory ``[B, H, S, d_head]`` once
    the first step has computed them: the memory is the same at every step, so it is projected
    once per generation rather than once per token.
    """

    def __init__(
        self,
        batch: int,
        heads: int,
        capacity: int,
        d_head: int,
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if min(batch, heads, capacity, d_head) < 1:
            raise ValueError(
                f"cache sizes must be ≥ 1, got batch={batch}, heads={heads}, "
                f"capacity={capacity}, d_head={d_head}"
            )
        shape = (batch, heads, capacity, d_head)
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0
        self.context: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k, v [B, H, l, d_head]`` after the cached positions; return every cached key
        and value ``[B, H, length, d_head]`` (views of the buffers, the new ones included). The new
        entries' values are checked here (NaN/inf), so that attention over the cache need not
        re-read the old ones (:func:`core.ops.checked_already`)."""
        start, stop = self.length, self.length + k.shape[2]
        if k.shape[:2] != self.k.shape[:2] or k.shape[3] != self.k.shape[3] or k.shape != v.shape:
            raise ValueError(
                f"cache holds [B, H, ·, d_head] = {tuple(self.k.shape)}; got k {tuple(k.shape)} "
                f"and v {tuple(v.shape)}"
            )
        if stop > self.capacity:
            raise ValueError(
                f"cache is full: {start} cached + {k.shape[2]} new positions exceed its capacity "
                f"{self.capacity}; build it with a larger capacity"
            )
        check_finite("k", k)  # once per entry: decoding steps pass the whole cache unchecked
        check_finite("v", v)
        self.k[:, :, start:stop] = k
        self.v[:, :, start:stop] = v
        self.length = stop
        return self.k[:, :, :stop], self.v[:, :, :stop]
