"""Tile feature extractors: what turns a batch of RGB tiles uint8 ``[B, H, W, 3]`` into features
float32 ``[B, D]``, and :func:`build_extractor`, which makes one by name:

* ``"builtin"`` — :class:`~apps.wsi.handcrafted.ColourTexture`: colour, stain and texture
  statistics, no weights, D = 105.
* a dotted path to a function returning an ``nn.Module`` (``torchvision.models.resnet50``) —
  :class:`~apps.wsi.torchnets.TorchModelExtractor`, with a local state dict.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable

import numpy as np

from apps.wsi.handcrafted import ColourTexture
from apps.wsi.torchnets import TorchModelExtractor
from core.train.errors import InputError

__all__ = [
    "BUILTIN",
    "ColourTexture",
    "FeatureExtractor",
    "TorchModelExtractor",
    "build_extractor",
]


@runtime_checkable
class FeatureExtractor(Protocol):
    """Tiles uint8 ``[B, H, W, 3]`` → features float32 ``[B, dim]``; ``name`` is stored with the
    features so that files made by different extractors are never mixed."""

    name: str
    dim: int

    def __call__(self, tiles: np.ndarray) -> np.ndarray: ...


BUILTIN = "builtin"


def build_extractor(name: str = BUILTIN, **options: Any) -> FeatureExtractor:
    """``"builtin"``: :class:`ColourTexture` (options must be None: it takes none); a dotted path:
    ``TorchModelExtractor(name, **options)``, e.g. ``build_extractor("torchvision.models.resnet50",
    weights_file="r50.pth", strip="fc")``."""
    if name == BUILTIN:
        given = sorted(key for key, value in options.items() if value is not None)
        if given:
            raise InputError(f"the builtin feature extractor takes no options, got {given}")
        return ColourTexture()
    if "." not in name:
        raise InputError(
            f"unknown feature extractor {name!r}; expected {BUILTIN!r} or a dotted path to a "
            "function returning an nn.Module (torchvision.models.resnet50)"
        )
    try:
        inspect.signature(TorchModelExtractor).bind(name, **options)
    except TypeError as error:
        raise InputError(f"feature extractor {name!r}: {error}") from error
    return TorchModelExtractor(name, **options)
