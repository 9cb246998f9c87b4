"""Triton kernels, one module per op: plain functions on validated tensors, no ``nn.Module``.

``core.ops`` imports them lazily when the backend resolves to ``"triton"``; on the CPU they run only under
``TRITON_INTERPRET=1`` (set before import), which is how the test-suite checks them.
"""
