import pytest
import torch

from core.ops.backend import resolve_backend


def test_auto_picks_reference_on_cpu():
    assert resolve_backend("auto", torch.device("cpu"), "attention") == "reference"


def test_environment_variable_sets_the_default(monkeypatch):
    monkeypatch.setenv("MANYHEADS_BACKEND", "reference")
    assert resolve_backend(None, torch.device("cpu"), "attention") == "reference"
    monkeypatch.setenv("MANYHEADS_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend(None, torch.device("cpu"), "attention")


def test_triton_on_cpu_outside_interpreter_is_an_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="needs the triton package and a CUDA tensor"):
        resolve_backend("triton", torch.device("cpu"), "attention")


def test_op_without_kernel_never_resolves_to_triton():
    assert resolve_backend("auto", torch.device("cuda"), "segment_softmax", has_kernel=False) == (
        "reference"
    )


def test_auto_picks_triton_for_cuda_tensors_when_triton_imports(monkeypatch):
    monkeypatch.setattr("core.ops.backend.triton_available", lambda: True)
    assert resolve_backend("auto", torch.device("cuda"), "attention") == "triton"
    monkeypatch.setattr("core.ops.backend.triton_available", lambda: False)
    assert resolve_backend("auto", torch.device("cuda"), "attention") == "reference"
