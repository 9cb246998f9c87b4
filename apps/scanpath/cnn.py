"""OAT's appearance branch (§3.1): a small CNN over each object's crop.

conv 5×5/16 → ReLU → max-pool 5 → conv 3×3/32 → ReLU → max-pool 3 → FC. A training step runs it on
every object of every display (20 × 85 crops of 150 × 93 in the paper's setting), which makes the first
convolution the costliest op of OAT on a CPU, and its full-resolution output the largest tensor. So
the first block is one autograd function (:class:`ConvMaxPool`) that computes the same function and
gradients as ``max_pool2d(relu(conv2d(x)), 5)`` but

* pools before the ReLU (equal, as ReLU is monotone), on channels-last tensors (the layout oneDNN's
  CPU convolution and pooling are fastest in), in chunks of crops;
* keeps for the backward pass only the input and the pooling's argmax indices — never the
  convolution's output — and rebuilds the sparse output gradient chunk by chunk;
* skips the input gradient (crops are data).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIN_CROP = 29  # 5 px left after the first conv and pool, for the 3 × 3 conv and its pool
CHUNK = 128  # crops per convolution call: bounds the full-resolution intermediate to ~100 MB


class ConvMaxPool(torch.autograd.Function):
    """``max_pool2d(conv2d(x, weight, bias), pool)`` for ``x [M, C, H, W]`` that needs no gradient;
    returns ``[M, C_out, H', W']`` and gradients for ``weight`` and ``bias`` only."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        pool: int,
    ) -> torch.Tensor:
        pooled, indices = [], []
        for chunk in x.split(CHUNK):
            out, index = F.max_pool2d_with_indices(F.conv2d(chunk, weight, bias), pool)
            pooled.append(out)
            indices.append(index)
        ctx.save_for_backward(x, weight, torch.cat(indices))
        ctx.pool = pool
        return torch.cat(pooled)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[None, torch.Tensor, torch.Tensor, None]:
        x, weight, indices = ctx.saved_tensors
        c_out, k = weight.shape[0], weight.shape[-1]
        height, width = x.shape[2] - k + 1, x.shape[3] - k + 1
        # the convolution's output gradient, channels-last: zero but at each window's argmax
        scratch = x.new_zeros(min(CHUNK, len(x)), height * width * c_out)
        channel = torch.arange(c_out, device=x.device)[:, None]
        grad_weight, grad_bias = torch.zeros_like(weight), weight.new_zeros(c_out)
        for chunk, g, index in zip(
            x.split(CHUNK), grad.split(CHUNK), indices.split(CHUNK), strict=True
        ):
            m = len(chunk)
            flat = (index.reshape(m, c_out, -1) * c_out + channel).reshape(m, -1)
            g_full = scratch[:m]
            g_full.scatter_(1, flat, g.reshape(m, -1))
            _, gw, gb = torch.ops.aten.convolution_backward(
                g_full.view(m, height, width, c_out).permute(0, 3, 1, 2),
                chunk,
                weight,
                [c_out],
                [1, 1],
                [0, 0],
                [1, 1],
                False,
                [0, 0],
                1,
                [False, True, True],
            )
            g_full.scatter_(1, flat, 0.0)  # back to zeros for the next chunk
            grad_weight += gw
            grad_bias += gb
        return None, grad_weight, grad_bias, None


class CropCNN(nn.Module):
    """``[M, 3, h, w]`` uint8 crops → ``[M, out_dim]`` appearance features."""

    def __init__(self, crop_size: tuple[int, int], out_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 5)
        self.conv2 = nn.Conv2d(16, 32, 3)
        if min(crop_size) < MIN_CROP:
            raise ValueError(
                f"crops of {tuple(crop_size)} are too small for the CNN (need ≥ {MIN_CROP} px a side)"
            )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, 3, *crop_size)).shape[1]
        self.fc = nn.Linear(flat, out_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[M, 3, h, w]`` float → ``[M, F]`` flattened conv features."""
        h = (x.shape[2] - 4) // 5 * 5 + 4  # rows and columns the first pooling never reads
        w = (x.shape[3] - 4) // 5 * 5 + 4
        x = x[:, :, :h, :w]
        x = torch.relu(ConvMaxPool.apply(x, self.conv1.weight, self.conv1.bias, 5))
        x = torch.relu(F.max_pool2d(self.conv2(x), 3))
        return x.contiguous().flatten(1)  # NCHW order, whatever the layout

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        crops = crops.contiguous(memory_format=torch.channels_last)  # before widening to float
        x = crops.to(self.fc.weight.dtype).div_(255.0).sub_(0.5)
        return self.fc(self.features(x))
