"""spconv on a CPU-only torch: the one compatibility shim (two patches), and small tensor helpers.

Importing this module calls :func:`enable_cpu_backward` and :func:`serialise_cpu_convolutions`, so
any code that builds sparse convolutions through it can train on the CPU, with right results.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator, Sequence

import spconv.pytorch as spconv
import torch
from spconv.pytorch import cppcore
from spconv.pytorch import ops as spconv_ops


def _null_stream_on_cpu(original: Callable[[], int]) -> Callable[[], int]:
    """Wrap spconv's ``get_current_stream``: 0 (the null stream) when CUDA is absent."""

    @functools.wraps(original)
    def get_current_stream() -> int:
        if not torch.cuda.is_available():
            return 0
        return original()

    get_current_stream.cpu_backward_shim = True  # type: ignore[attr-defined]
    return get_current_stream


def enable_cpu_backward() -> None:
    """Let spconv's backward pass run on a CPU-only torch (idempotent).

    Why: spconv 2.3.8's CPU wheel computes sparse convolutions forward on the CPU, but its backward
    (``spconv.pytorch.ops.indice_conv_backward`` and friends) asks for the current CUDA stream
    through ``spconv.pytorch.cppcore.get_current_stream``, which calls
    ``torch.cuda.current_stream()`` and fails with "Torch not compiled with CUDA enabled". spconv's
    CPU kernels ignore the stream, so we hand them 0, the null stream, whenever CUDA is not
    available; with CUDA the original function runs unchanged.

    The patch replaces the function in ``cppcore`` and in every already imported ``spconv`` module
    that bound the name with ``from ... import get_current_stream`` (``ops``, ``hash``, ``utils``,
    ...); modules imported later pick the patched one up from ``cppcore``.

    Checked against spconv 2.3.8 (cumm 0.7.11). To remove it once spconv fixes the backward: delete
    this module's shim, run ``tests/apps/pointcloud/test_sparse.py`` and drop its test that the
    backward fails without the shim (it will start failing, which is the signal).
    """
    original = cppcore.get_current_stream
    if getattr(original, "cpu_backward_shim", False):
        return
    patched = _null_stream_on_cpu(original)
    for name, module in list(sys.modules.items()):
        is_spconv = name == "spconv" or name.startswith("spconv.")
        if is_spconv and getattr(module, "get_current_stream", None) is original:
            module.get_current_stream = patched


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Within this block torch's CPU ops use ``count`` threads; the previous number is restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _one_thread_on_cpu(original: Callable[..., object]) -> Callable[..., object]:
    """Wrap a spconv op so it runs with one torch thread when its first tensor is on the CPU."""

    @functools.wraps(original)
    def serialised(features: torch.Tensor, *args: object, **kwargs: object) -> object:
        if features.is_cuda:
            return original(features, *args, **kwargs)
        with torch_threads(1):
            return original(features, *args, **kwargs)

    serialised.one_thread_shim = True  # type: ignore[attr-defined]
    return serialised


def serialise_cpu_convolutions() -> None:
    """Run spconv's CPU gather-GEMM-scatter convolutions on one thread (idempotent).

    Why: with more than one torch thread, spconv 2.3.8's CPU ``indice_conv`` (the forward of a
    strided ``SparseConv3d``, and its backward) returns wrong sums at output sites that several
    inputs reach — 33 of 40 trials on 2 threads against a dense ``conv3d``, none on one thread (a
    race in its scatter-add). Submanifold convolutions were right in our tests but share the op,
    so both run serialised; CUDA tensors are untouched. Remove with the other patch once spconv is
    fixed: ``tests/apps/pointcloud/test_sparse.py`` compares against dense convolutions on two
    threads.
    """
    for name in ("indice_conv", "indice_conv_backward"):
        original = getattr(spconv_ops, name)
        if not getattr(original, "one_thread_shim", False):
            setattr(spconv_ops, name, _one_thread_on_cpu(original))


def sparse_tensor(
    features: torch.Tensor,
    coords: torch.Tensor,
    spatial_shape: Sequence[int],
    batch_size: int,
) -> spconv.SparseConvTensor:
    """A spconv tensor from features ``[V, C]`` at coords ``[V, 4]`` (b, z, y, x).

    spatial_shape: (nz, ny, nx). spconv wants int32 indices; coords may be any integer dtype.
    """
    if coords.ndim != 2 or coords.shape[1] != 4 or coords.shape[0] != features.shape[0]:
        raise ValueError(
            f"coords {tuple(coords.shape)} must be [V, 4] with V = {features.shape[0]} "
            "(the rows of features)"
        )
    indices = coords.to(torch.int32).contiguous()
    return spconv.SparseConvTensor(features, indices, list(spatial_shape), batch_size)


def to_dense(tensor: spconv.SparseConvTensor) -> torch.Tensor:
    """The tensor as a dense ``[B, C, nz, ny, nx]`` grid, zeros at inactive sites (differentiable)."""
    features = tensor.features
    b, z, y, x = tensor.indices.long().unbind(dim=1)
    grid = features.new_zeros(tensor.batch_size, *tensor.spatial_shape, features.shape[1])
    return grid.index_put((b, z, y, x), features).permute(0, 4, 1, 2, 3)


enable_cpu_backward()
serialise_cpu_convolutions()
