"""Scattered linear attention kernel (core.kernels.scattered_linear_attention) against the padded
einsum reference."""

from __future__ import annotations

import pytest
import torch

from core.ops import scattered_linear_attention

pytestmark = pytest.mark.kernels


def _offsets(sizes: list[int]) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(sizes).cumsum(0).tolist()], dtype=torch.int32)


def _rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize(
    "sizes,dim,dim_v",
    [([0, 1, 7, 40], 24, 16), ([33, 0, 64], 16, 32), ([1], 128, 16)],
    ids=["0-1-7-40", "33-0-64", "1-D128"],
)
def test_matches_reference(gen, assert_matches, dtype, device, sizes, dim, dim_v):
    cu = _offsets(sizes).to(device)
    total = sum(sizes)
    q, k, v = _rand(gen, total, 2, dim), _rand(gen, total, 2, dim), _rand(gen, total, 2, dim_v)
    # Keep φ(q)·z well away from 0 so fp16 rows are not dominated by the ε guard.
    q, k = q + 0.5, k + 0.5

    def run(backend):
        return lambda q, k, v: scattered_linear_attention(q, k, v, cu, backend=backend)

    assert_matches(run("triton"), run("reference"), [q, k, v], dtype, device)


def test_all_negative_queries_give_zeros(gen, device):
    cu = _offsets([3, 5]).to(device)
    q = -_rand(gen, 8, 1, 16).abs().float().to(device) - 0.1
    k, v = _rand(gen, 8, 1, 16).float().to(device), _rand(gen, 8, 1, 16).float().to(device)
    out = scattered_linear_attention(q, k, v, cu, backend="triton")
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_realistic_sizes_on_gpu(gen, assert_matches, half):
    sizes = torch.randint(1, 151, (700,), generator=gen).tolist()
    cu = _offsets(sizes).cuda()
    total = sum(sizes)
    q, k, v = (_rand(gen, total, 4, 32) + 0.5 for _ in range(3))

    def run(backend):
        return lambda q, k, v: scattered_linear_attention(q, k, v, cu, backend=backend)

    assert_matches(run("triton"), run("reference"), [q, k, v], half, "cuda")
