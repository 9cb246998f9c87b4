"""The dispatch table: which implementation each backend request resolves to, and that ops go through it."""

import sys

import pytest
import torch

from core.ops import attention
from core.ops.backend import OPS, dispatch, load, resolve_backend

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def dense(head_dim: int = 8) -> dict[str, object]:
    """Arguments of a plain dense attention call (meta tensors: only shapes are looked at)."""
    q = torch.empty(1, 2, 5, head_dim, device="meta")
    return {"q": q, "k": q, "v": q, "mask": None, "bias": None, "causal": True, "scale": 0.3}


@pytest.fixture
def triton_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.ops.backend.triton_available", lambda: True)


def test_auto_picks_reference_on_cpu():
    for op in OPS:
        assert resolve_backend("auto", CPU, op) == "reference"


def test_environment_variable_sets_the_default(monkeypatch):
    monkeypatch.setenv("MANYHEADS_BACKEND", "reference")
    assert resolve_backend(None, CUDA, "relative_attention") == "reference"
    monkeypatch.setenv("MANYHEADS_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend(None, CPU, "attention")


def test_unknown_op_is_an_error():
    with pytest.raises(ValueError, match="unknown op 'flash'"):
        resolve_backend("auto", CPU, "flash")


def test_triton_on_cpu_outside_interpreter_is_an_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="needs the triton package and a CUDA tensor"):
        resolve_backend("triton", CPU, "attention")


@pytest.mark.parametrize("op", ["segment_softmax", "attention_pool", "pointer_attention"])
def test_op_without_kernel_never_resolves_to_triton(triton_importable, op):
    assert OPS[op].triton is None
    assert resolve_backend("auto", CUDA, op) == "reference"
    with pytest.raises(ValueError, match="has no Triton kernel"):
        resolve_backend("triton", CUDA, op)


def test_auto_on_cuda_leaves_plain_dense_attention_to_sdpa(triton_importable):
    plain = dense()
    assert resolve_backend("auto", CUDA, "attention", plain) == "reference"
    with_bias = plain | {"bias": torch.empty(5, 5, device="meta")}
    assert resolve_backend("auto", CUDA, "attention", with_bias) == "triton"
    assert resolve_backend("triton", CUDA, "attention", plain) == "triton"


@pytest.mark.parametrize(
    "op", ["relative_attention", "varlen_attention", "scattered_linear_attention"]
)
def test_auto_on_cuda_picks_the_kernel_when_triton_imports(monkeypatch, op):
    monkeypatch.setattr("core.ops.backend.triton_available", lambda: True)
    assert resolve_backend("auto", CUDA, op) == "triton"
    monkeypatch.setattr("core.ops.backend.triton_available", lambda: False)
    assert resolve_backend("auto", CUDA, op) == "reference"


def test_inputs_the_kernel_does_not_support(triton_importable):
    wide = dense(head_dim=256) | {"bias": torch.empty(5, 5, device="meta")}
    assert resolve_backend("auto", CUDA, "attention", wide) == "reference"
    with pytest.raises(ValueError, match=r"head dims .* up to 128"):
        resolve_backend("triton", CUDA, "attention", wide)


def test_every_reference_loads():
    for op, entry in OPS.items():
        assert callable(load(entry.reference)), op


def test_ops_hand_their_validated_arguments_to_the_table_by_name(gen, monkeypatch):
    calls = []
    real = load(OPS["attention"].reference)

    def spy(**arguments):
        calls.append(arguments)
        return real(**arguments)

    # core.ops re-exports a function named like the module, so patch the module object itself.
    monkeypatch.setattr(sys.modules["core.ops.attention"], "attention_reference", spy)
    q = torch.randn(1, 2, 5, 16, generator=gen)
    attention(q, q, q, causal=True)
    assert len(calls) == 1
    assert calls[0]["scale"] == 0.25 and calls[0]["causal"] is True and calls[0]["bias"] is None
    assert torch.equal(
        dispatch("attention", "reference", **calls[0]), attention(q, q, q, causal=True)
    )
