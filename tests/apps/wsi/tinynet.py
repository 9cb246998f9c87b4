"""A tiny CNN for the TorchModelExtractor tests: 8 features before a 3-class ``fc`` head."""

from __future__ import annotations

from torch import nn


class TinyNet(nn.Module):
    """``[B, 3, H, W]`` → conv → ReLU → global average pool ``[B, 8, 1, 1]`` → ``fc`` ``[B, 3]``."""

    def __init__(self, width: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x).relu()).flatten(1))


def tiny_net(width: int = 8) -> TinyNet:
    """A builder, as ``model=`` names it: ``tests.apps.wsi.tinynet.tiny_net``."""
    return TinyNet(width)
