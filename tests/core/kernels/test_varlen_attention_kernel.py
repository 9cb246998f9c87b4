"""Varlen attention kernel (core.kernels.flash_attention) against the bucketed SDPA reference."""

from __future__ import annotations

import pytest
import torch

from core.ops import varlen_attention

pytestmark = pytest.mark.kernels


def _offsets(sizes: list[int], dtype: torch.dtype = torch.int32) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(sizes).cumsum(0).tolist()], dtype=dtype)


def _rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("sizes", [[0, 1, 7, 40], [33, 0, 64, 2]], ids=["0-1-7-40", "33-0-64-2"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_matches_reference(gen, assert_matches, dtype, device, sizes, causal):
    cu = _offsets(sizes).to(device)
    total = sum(sizes)
    q, k, v = _rand(gen, total, 2, 24), _rand(gen, total, 2, 24), _rand(gen, total, 2, 16)

    def run(backend):
        return lambda q, k, v: varlen_attention(q, k, v, cu, causal=causal, backend=backend)

    assert_matches(run("triton"), run("reference"), [q, k, v], dtype, device)


def test_cross_attention_with_an_empty_key_segment(gen, assert_matches, dtype, device):
    # Segment 1 has queries but no keys: its outputs are zeros, as in the reference's safe softmax.
    cu_q, cu_k = _offsets([5, 9, 0, 33]).to(device), _offsets([2, 0, 3, 40], torch.int64).to(device)
    q = _rand(gen, 47, 3, 16)
    k, v = _rand(gen, 45, 3, 16), _rand(gen, 45, 3, 32)

    def run(backend):
        return lambda q, k, v: varlen_attention(q, k, v, cu_q, cu_seqlens_k=cu_k, backend=backend)

    assert_matches(run("triton"), run("reference"), [q, k, v], dtype, device)


def test_no_tokens_at_all(device):
    q = torch.empty(0, 2, 16, device=device)
    out = varlen_attention(q, q, q, _offsets([0, 0]).to(device), backend="triton")
    assert out.shape == (0, 2, 16)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_realistic_sizes_on_gpu(gen, assert_matches, half):
    sizes = torch.randint(0, 1024, (16,), generator=gen).tolist()
    cu = _offsets(sizes).cuda()
    q, k, v = (_rand(gen, sum(sizes), 4, 64) for _ in range(3))

    def run(backend):
        return lambda q, k, v: varlen_attention(q, k, v, cu, causal=True, backend=backend)

    assert_matches(run("triton"), run("reference"), [q, k, v], half, "cuda")
