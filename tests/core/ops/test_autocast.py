"""Ops under autocast: each computes in the dtype its table entry declares, whatever dtypes it is given.

bf16 runs on this machine's CPU only through PyTorch's portable kernels, so tests of the low-precision
path declare the CPU bf16-native (``core.ops.backend._cpu_computes_natively``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import get_args

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from core.ops import (
    attention,
    attention_pool,
    pointer_attention,
    relative_attention,
    scattered_linear_attention,
    segment_softmax,
    varlen_attention,
)
from core.ops.backend import OPS, AutocastPolicy

BF16_RTOL = 2e-2  # bf16 against fp32, max abs error relative to the result's scale (core guide)
BF16_GRADIENT_RTOL = 5e-2  # the same for gradients, which take two bf16 roundings more
FP32_POLICY = {"segment_softmax", "attention_pool", "pointer_attention"}


def cu(*lengths: int) -> Tensor:
    return torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)


def case(op: str, gen: torch.Generator) -> tuple[Callable[..., object], dict[str, Tensor]]:
    """The op called with its fixed arguments bound, and fresh floating-point inputs by name."""
    randn = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    segments = cu(5, 1, 9)
    if op == "attention":
        bias = randn(7, 7)
        return lambda q, k, v: attention(q, k, v, bias=bias), {
            name: randn(2, 3, 7, 16) for name in "qkv"
        }
    if op == "relative_attention":
        inputs = {name: randn(2, 3, 7, 16) for name in "qkv"} | {"rel_emb": randn(3, 7, 16)}
        return lambda q, k, v, rel_emb: relative_attention(q, k, v, rel_emb, causal=True), inputs
    if op == "varlen_attention":
        return lambda q, k, v: varlen_attention(q, k, v, segments), {
            name: randn(15, 2, 16) for name in "qkv"
        }
    if op == "scattered_linear_attention":
        return lambda q, k, v: scattered_linear_attention(q, k, v, segments), {
            name: randn(15, 2, 16) for name in "qkv"
        }
    if op == "segment_softmax":
        return lambda scores: segment_softmax(scores, segments), {"scores": randn(15, 2)}
    if op == "attention_pool":
        return lambda scores, values: attention_pool(scores, values, segments), {
            "scores": randn(15, 2),
            "values": randn(15, 16),
        }
    assert op == "pointer_attention"
    mask = torch.rand(3, 6, 11, generator=gen) > 0.3
    mask[..., 0] = True
    return lambda query, keys, v: pointer_attention(query, keys, v, mask=mask), {
        "query": randn(3, 6, 32),
        "keys": randn(3, 11, 32),
        "v": randn(32),
    }


def forward(
    fn: Callable[..., object], inputs: dict[str, Tensor], dtype: torch.dtype
) -> tuple[dict[str, Tensor], list[Tensor]]:
    """The inputs cast to ``dtype`` (as a layer before the op would hand them over), as leaves, and
    the op's outputs."""
    leaves = {name: x.to(dtype).requires_grad_() for name, x in inputs.items()}
    out = fn(**leaves)
    return leaves, list(out) if isinstance(out, tuple) else [out]


def input_gradients(leaves: dict[str, Tensor], outputs: list[Tensor]) -> dict[str, Tensor]:
    """Gradients of a fixed random weighting of the outputs (outside autocast, as Lightning runs the
    backward)."""
    weighting = torch.Generator().manual_seed(7)
    total = sum(
        (o.masked_fill(o.isinf(), 0.0).float() * torch.randn(o.shape, generator=weighting)).sum()
        for o in outputs
    )
    return dict(zip(leaves, torch.autograd.grad(total, list(leaves.values())), strict=True))


def max_error(got: Tensor, want: Tensor) -> float:
    """Max abs error relative to ``want``'s scale, over finite entries (masked ones agree on -inf)."""
    finite = want.isfinite()
    assert torch.equal(got.isfinite(), finite)
    error = (got.detach().double() - want.detach().double())[finite].abs().max()
    return float(error / want.detach()[finite].abs().max())


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.ops.backend._cpu_computes_natively", lambda dtype: True)


@pytest.fixture
def emulated_bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.ops.backend._cpu_computes_natively", lambda dtype: False)


def test_every_op_declares_how_it_computes_under_autocast():
    for op, entry in OPS.items():
        assert entry.autocast in get_args(AutocastPolicy), op
        assert (entry.autocast == "fp32") == (op in FP32_POLICY), op


@pytest.mark.parametrize("op", sorted(OPS))
def test_under_autocast_each_op_computes_in_its_declared_dtype(gen, bf16_cpu, op):
    fn, inputs = case(op, gen)
    leaves, want = forward(fn, inputs, torch.float32)
    want_grads = input_gradients(leaves, want)
    expected = torch.float32 if OPS[op].autocast == "fp32" else torch.bfloat16
    for given in (torch.float32, torch.bfloat16):  # what the layer before hands over
        with torch.autocast("cpu", torch.bfloat16):
            leaves, got = forward(fn, inputs, given)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == expected
            assert max_error(g, w) <= BF16_RTOL
        for name, grad in input_gradients(leaves, got).items():
            assert grad.dtype == given  # autograd returns each input's gradient in its dtype
            assert max_error(grad, want_grads[name]) <= BF16_GRADIENT_RTOL, name


@pytest.mark.parametrize("op", sorted(OPS))
def test_without_native_bf16_every_op_computes_in_fp32(gen, emulated_bf16_cpu, op):
    fn, inputs = case(op, gen)
    _, want = forward(fn, inputs, torch.float32)
    with torch.autocast("cpu", torch.bfloat16):
        _, got = forward(fn, inputs, torch.float32)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_pointer_scores_in_fp32_keep_the_query_gradient_that_bf16_loses(gen, bf16_cpu):
    """The cross-entropy gradient of the logits sums to zero over the keys, so the query gradient
    ``Σⱼ gᵢⱼ v (1 − tanh²(qᵢ + kⱼ))`` is a difference of nearly equal terms when the tanh arguments
    are small (a freshly initialised network). From the same bf16 inputs, the op under autocast
    returns it rounded to the inputs' bf16 and no worse; the same formula computed in bf16 does not."""
    scores_module = sys.modules["core.ops.pointer_attention"]  # the package re-exports the function
    query = (0.05 * torch.randn(8, 5, 64, generator=gen)).bfloat16()
    keys = (0.05 * torch.randn(8, 12, 64, generator=gen)).bfloat16()
    v = (0.1 * torch.randn(64, generator=gen)).bfloat16()
    targets = torch.randint(0, 12, (8 * 5,), generator=gen)

    def query_gradient(
        scores_of: Callable[[Tensor, Tensor, Tensor], Tensor], dtype: torch.dtype, autocast: bool
    ) -> Tensor:
        leaves = [x.to(dtype).requires_grad_() for x in (query, keys, v)]
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            logits = scores_of(*leaves)
        F.cross_entropy(logits.flatten(0, 1).double(), targets).backward()
        return leaves[0].grad.double()

    exact = query_gradient(scores_module.AdditiveScores.apply, torch.float64, autocast=False)
    ours = query_gradient(pointer_attention, torch.bfloat16, autocast=True)
    in_bf16 = query_gradient(scores_module.AdditiveScores.apply, torch.bfloat16, autocast=False)
    assert max_error(ours, exact) <= 2.0**-8  # one bf16 rounding of the gradient
    assert max_error(in_bf16, exact) > 0.1


def test_autocast_accepts_inputs_of_mixed_dtypes(gen):
    """A bf16 query from an autocast layer beside an fp32 parameter ``v``."""
    query = torch.randn(2, 3, 8, generator=gen).bfloat16()
    keys, v = torch.randn(2, 5, 8, generator=gen), torch.randn(8, generator=gen)
    with torch.autocast("cpu", torch.bfloat16):
        scores = pointer_attention(query, keys, v)
    assert scores.dtype == torch.float32
    want = pointer_attention(query.float(), keys, v)
    torch.testing.assert_close(scores, want, rtol=0, atol=0)


def test_pointer_backward_called_inside_autocast_stays_in_fp32(gen):
    query, keys = torch.randn(2, 9, 16, generator=gen), torch.randn(2, 11, 16, generator=gen)
    v = torch.randn(16, generator=gen)

    def gradients(backward_in_autocast: bool) -> list[Tensor]:
        leaves = [x.clone().requires_grad_() for x in (query, keys, v)]
        with torch.autocast("cpu", torch.bfloat16):
            scores = pointer_attention(*leaves)
            if backward_in_autocast:
                scores.sum().backward()
        if not backward_in_autocast:
            scores.sum().backward()
        return [leaf.grad for leaf in leaves]

    for inside, outside in zip(gradients(True), gradients(False), strict=True):
        torch.testing.assert_close(inside, outside, rtol=0, atol=0)
