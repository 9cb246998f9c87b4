"""Dense attention kernel (core.kernels.flash_attention) against the SDPA reference, and the op's
dispatch through the backend table."""

from __future__ import annotations

import inspect

import pytest
import torch

from core.ops import attention
from core.ops.backend import OPS, load

pytestmark = pytest.mark.kernels

# (Lq, Lk, D, Dv): odd lengths straddle block edges, D=24 exercises the masked head-dim padding.
SHAPES = [(1, 1, 16, 16), (17, 33, 24, 16), (33, 17, 32, 24), (64, 64, 64, 64)]


def _rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("len_q,len_k,dim,dim_v", SHAPES)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_matches_reference(gen, assert_matches, dtype, device, len_q, len_k, dim, dim_v, causal):
    q, k, v = (
        _rand(gen, 2, 2, len_q, dim),
        _rand(gen, 2, 2, len_k, dim),
        _rand(gen, 2, 2, len_k, dim_v),
    )

    def run(backend):
        return lambda q, k, v: attention(q, k, v, causal=causal, backend=backend)

    assert_matches(run("triton"), run("reference"), [q, k, v], dtype, device)


@pytest.mark.parametrize("len_q,len_k", [(17, 33), (64, 64)])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_mask_and_bias_with_bias_grad(gen, assert_matches, dtype, device, len_q, len_k, causal):
    q, k, v = _rand(gen, 2, 2, len_q, 24), _rand(gen, 2, 2, len_k, 24), _rand(gen, 2, 2, len_k, 16)
    bias = _rand(gen, 1, 2, len_q, len_k)  # broadcast over batch: its gradient is summed over it
    mask = (torch.rand(2, 1, len_q, len_k, generator=gen) > 0.3).to(device)

    def run(backend):
        return lambda q, k, v, bias: attention(
            q, k, v, mask=mask, bias=bias, causal=causal, backend=backend
        )

    assert_matches(run("triton"), run("reference"), [q, k, v, bias], dtype, device)


def test_bias_without_grad_and_key_padding_mask(gen, assert_matches, dtype, device):
    q, k, v = _rand(gen, 1, 3, 33, 16), _rand(gen, 1, 3, 40, 16), _rand(gen, 1, 3, 40, 16)
    bias = _rand(gen, 33, 40).to(device)  # [Lq, Lk] shared by batch and heads, a constant
    mask = (torch.arange(40) < 29).view(1, 1, 1, 40).to(device)

    def run(backend):
        return lambda q, k, v: attention(
            q, k, v, mask=mask, bias=bias.to(q.dtype), scale=0.3, backend=backend
        )

    assert_matches(run("triton"), run("reference"), [q, k, v], dtype, device)


def test_keyless_rows_give_zero_output_and_zero_grads(gen, device):
    # Causal with Lq > Lk hides every key from the first Lq − Lk queries; the mask hides row 20 too.
    q, k, v = (_rand(gen, 1, 2, n, 16).float().to(device).requires_grad_() for n in (40, 8, 8))
    mask = torch.ones(1, 1, 40, 8, dtype=torch.bool, device=device)
    mask[..., 35, :] = False
    out = attention(q, k, v, mask=mask, causal=True, backend="triton")
    keyless = torch.zeros(40, dtype=torch.bool)
    keyless[:32] = True
    keyless[35] = True
    assert torch.equal(out[:, :, keyless], torch.zeros_like(out[:, :, keyless]))
    out.square().sum().backward()
    assert torch.equal(q.grad[:, :, keyless], torch.zeros_like(q.grad[:, :, keyless]))
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))


def test_non_contiguous_inputs(gen, assert_matches, device):
    q, k, v = (_rand(gen, 2, 17, 2, 16) for _ in range(3))  # [B, L, H, D] seen as [B, H, L, D]

    def run(backend):
        return lambda q, k, v: attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), backend=backend
        )

    assert_matches(run("triton"), run("reference"), [q, k, v], torch.float32, device)


def test_every_kernel_in_the_table_takes_its_references_arguments():
    for op, entry in OPS.items():
        if entry.triton is not None:
            reference = inspect.signature(load(entry.reference)).parameters
            kernel = inspect.signature(load(entry.triton)).parameters
            assert set(reference) <= set(kernel), op


def test_auto_backend_on_cpu_runs_the_reference(gen, monkeypatch):
    import core.kernels.flash_attention as kernel_module

    def refuse(*args, **kwargs):
        raise AssertionError("backend='auto' must not run the Triton kernel for CPU tensors")

    monkeypatch.setattr(kernel_module, "flash_attention", refuse)
    q = _rand(gen, 1, 1, 5, 16)
    torch.testing.assert_close(
        attention(q, q, q, backend="auto"), attention(q, q, q, backend="reference")
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU interpreter path")
def test_triton_backend_on_cpu_runs_the_kernel(gen, monkeypatch):
    import core.kernels.flash_attention as kernel_module

    calls = []
    real = kernel_module.flash_attention

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(kernel_module, "flash_attention", spy)
    q = _rand(gen, 1, 1, 5, 16).float()
    out = attention(q, q, q, causal=True, backend="triton")
    assert len(calls) == 1 and calls[0]["causal"] is True and calls[0]["scale"] == 0.25
    torch.testing.assert_close(out, attention(q, q, q, causal=True, backend="reference"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("length", [1024, 4096])
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_realistic_sizes_on_gpu(gen, assert_matches, half, length):
    q, k, v = (_rand(gen, 1, 4, length, 64) for _ in range(3))
    mask = (torch.rand(1, 1, 1, length, generator=gen) > 0.1).cuda()

    def run(backend):
        return lambda q, k, v: attention(q, k, v, mask=mask, causal=True, backend=backend)

    assert_matches(run("triton"), run("reference"), [q, k, v], half, "cuda")
