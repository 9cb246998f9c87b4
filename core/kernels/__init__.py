"""Triton kernels: plain functions on validated tensors, no ``nn.Module``.

``flash_attention`` serves the three softmax ops (dense, relative, varlen) and
``scattered_linear_attention`` the ScatterFormer op. ``core.ops.backend`` imports them lazily when the
backend resolves to ``"triton"``; on the CPU they run only under ``TRITON_INTERPRET=1`` (set before
import), which is how the test-suite checks them.
"""
