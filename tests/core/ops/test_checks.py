"""Value checks (they read tensor values, a device→host sync on GPUs) run on CPU tensors or when
debugging; shape and dtype checks always run."""

import pytest
import torch

from core.ops import checked_already, debug_checks
from core.ops._checks import (
    check_cu_seqlens,
    check_finite,
    check_rank,
    value_checks_enabled,
)

# A device whose values cannot be read, standing in for CUDA: any value check on it would fail.
FAKE_DEVICE = "meta"


def test_value_checks_run_on_cpu_and_skip_other_devices(monkeypatch):
    monkeypatch.delenv("MANYHEADS_DEBUG", raising=False)
    assert value_checks_enabled(torch.zeros(1))
    assert not value_checks_enabled(torch.zeros(1, device=FAKE_DEVICE))


def test_debug_switches_turn_value_checks_on_everywhere(monkeypatch):
    monkeypatch.delenv("MANYHEADS_DEBUG", raising=False)
    on_device = torch.zeros(1, device=FAKE_DEVICE)
    with debug_checks():
        assert value_checks_enabled(on_device)
    assert not value_checks_enabled(on_device)
    monkeypatch.setenv("MANYHEADS_DEBUG", "1")
    assert value_checks_enabled(on_device)


def test_device_path_reads_no_values_unless_debugging(monkeypatch):
    monkeypatch.delenv("MANYHEADS_DEBUG", raising=False)
    offsets = torch.tensor([0, 3, 9], dtype=torch.int32, device=FAKE_DEVICE)
    values = torch.empty(4, 2, device=FAKE_DEVICE)
    check_cu_seqlens(offsets, total=9)  # reads nothing: a meta tensor has no values to read
    check_finite("q", values)
    with debug_checks(), pytest.raises((RuntimeError, NotImplementedError)):
        check_cu_seqlens(offsets, total=9)  # now it reads the offsets, which meta cannot give
    with debug_checks(), pytest.raises((RuntimeError, NotImplementedError)):
        check_finite("q", values)


def test_shape_checks_always_run(monkeypatch):
    monkeypatch.delenv("MANYHEADS_DEBUG", raising=False)
    with pytest.raises(ValueError, match=r"cu_seqlens must be \[N\+1\]"):
        check_cu_seqlens(torch.zeros(1, 2, dtype=torch.int32, device=FAKE_DEVICE), total=0)
    with pytest.raises(ValueError, match=r"q must be \[T, H, D\]"):
        check_rank("q", torch.empty(4, 2, device=FAKE_DEVICE), 3, "[T, H, D]")


def test_cpu_value_errors_need_no_switch():
    with pytest.raises(ValueError, match="must start at 0"):
        check_cu_seqlens(torch.tensor([1, 9], dtype=torch.int32), total=9)
    with pytest.raises(ValueError, match="q contains NaN"):
        check_finite("q", torch.tensor([1.0, float("nan")]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_finite_values_whose_sum_overflows_pass(dtype):
    big = torch.finfo(dtype).max
    check_finite("q", torch.full((4, 3), big, dtype=dtype))
    check_finite("q", torch.full((8, 2), big, dtype=dtype)[::2].t())  # strided, as a cache view
    with pytest.raises(ValueError, match="q contains NaN or inf"):
        check_finite("q", torch.tensor([big, -big, float("inf")], dtype=dtype))


def test_checked_already_skips_only_the_named_tensors(monkeypatch):
    monkeypatch.delenv("MANYHEADS_DEBUG", raising=False)
    cache, other = torch.zeros(3), torch.zeros(3)
    with checked_already(cache):
        assert not value_checks_enabled(cache)
        assert value_checks_enabled(other)
        assert value_checks_enabled(cache.view(3))  # another object: checked as usual
        with debug_checks():
            assert value_checks_enabled(cache)
    assert value_checks_enabled(cache)
    with checked_already(cache), pytest.raises(ValueError, match="NaN or inf"):
        check_finite("q", other.fill_(float("inf")))
