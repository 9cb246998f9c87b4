"""Fused relative attention (core.kernels.flash_attention with rel_emb) against the skewing reference."""

from __future__ import annotations

import pytest
import torch

from core.ops import relative_attention

pytestmark = pytest.mark.kernels

# (L, causal, K = max relative distance, D): K < L − 1 exercises clipping to the edge rows, K ≥ L − 1
# the unclipped Music Transformer; L = 64 spans two blocks each way, so tiles see shifted distances.
CASES = [
    (1, True, 2, 16),
    (17, False, 4, 24),
    (33, True, 40, 32),
    (64, False, 63, 16),
    (64, True, 5, 16),
]


def _rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("length,causal,max_rel,dim", CASES)
def test_matches_reference(gen, assert_matches, dtype, device, length, causal, max_rel, dim):
    rows = max_rel + 1 if causal else 2 * max_rel + 1
    q, k, v = (_rand(gen, 2, 2, length, dim) for _ in range(3))
    rel_emb = _rand(gen, 2, rows, dim)
    mask = (torch.rand(2, 1, 1, length, generator=gen) > 0.2).to(device)  # key padding

    def run(backend):
        return lambda q, k, v, rel_emb: relative_attention(
            q, k, v, rel_emb, causal=causal, mask=mask, backend=backend
        )

    assert_matches(run("triton"), run("reference"), [q, k, v, rel_emb], dtype, device)


def test_shared_embedding_and_custom_scale(gen, assert_matches, device):
    q, k, v = _rand(gen, 1, 3, 40, 16), _rand(gen, 1, 3, 40, 16), _rand(gen, 1, 3, 40, 8)
    rel_emb = _rand(gen, 13, 16)  # [R, D] shared by the heads: its gradient sums theirs

    def run(backend):
        return lambda q, k, v, rel_emb: relative_attention(
            q, k, v, rel_emb, causal=False, scale=0.2, backend=backend
        )

    assert_matches(run("triton"), run("reference"), [q, k, v, rel_emb], torch.float32, device)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_realistic_sizes_on_gpu(gen, assert_matches, half, causal):
    length, max_rel = 2048, 2047
    q, k, v = (_rand(gen, 1, 4, length, 64) for _ in range(3))
    rel_emb = _rand(gen, 4, max_rel + 1 if causal else 2 * max_rel + 1, 64)

    def run(backend):
        return lambda q, k, v, rel_emb: relative_attention(
            q, k, v, rel_emb, causal=causal, backend=backend
        )

    assert_matches(run("triton"), run("reference"), [q, k, v, rel_emb], half, "cuda")
