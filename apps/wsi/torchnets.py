"""TorchModelExtractor: any PyTorch network as a tile feature extractor — a builder named by its
dotted path (``torchvision.models.resnet50``, ``timm.create_model``) plus a local state dict.
Nothing is downloaded, and no such library is needed until it is named. (TorchScript files are
not taken: ``torch.jit`` is deprecated.)"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from apps.wsi.slides import check_tiles
from core.train.errors import InputError, input_file

LOAD_ERRORS = (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError)


def import_callable(dotted: str) -> Callable[..., Any]:
    """The object ``package.module.name`` names; InputError when it cannot be imported."""
    module_name, _, attribute = dotted.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise InputError(
            f"extractor model {dotted!r}: cannot import it ({error}); expected a dotted path to "
            "a function returning an nn.Module, such as torchvision.models.resnet50"
        ) from error
    if not callable(found):
        raise InputError(f"extractor model {dotted!r} is not callable")
    return found


def read_state(path: str | Path) -> Mapping[str, torch.Tensor]:
    """The state dict saved at ``path`` (loaded with ``weights_only=True``); InputError naming the
    file when it is not one."""
    path = input_file(path, "a PyTorch state dict (.pt/.pth) for the extractor")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as error:
        raise InputError(f"{path}: not a PyTorch state dict ({error})") from error
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise InputError(f"{path}: expected a state dict (parameter name → tensor)")
    return state


def _listing(keys: Sequence[str], most: int = 5) -> str:
    """``keys`` for a message: the first ``most`` and how many more."""
    more = f" and {len(keys) - most} more" if len(keys) > most else ""
    return ", ".join(keys[:most]) + more


def load_weights(net: nn.Module, path: str | Path, strip: str | None) -> None:
    """Load the state dict at ``path`` into ``net`` strictly, except that weights of the part to
    be stripped may be missing; InputError naming the file on missing, unexpected or misshapen
    parameters."""
    state = read_state(path)
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as error:  # a shape mismatch
        raise InputError(f"{path}: the weights do not fit the model ({error})") from error
    missing = [k for k in result.missing_keys if not (strip and k.startswith(f"{strip}."))]
    problems = [
        f"{label} {_listing(keys)}"
        for label, keys in (("missing:", missing), ("unexpected:", result.unexpected_keys))
        if keys
    ]
    if problems:
        raise InputError(f"{path}: the weights do not fit the model; " + "; ".join(problems))


def strip_part(net: nn.Module, dotted: str) -> None:
    """Replace the submodule ``dotted`` (``fc``, ``head.fc``) of ``net`` with ``nn.Identity()``."""
    *parents, last = dotted.split(".")
    owner = net
    for name in parents:
        owner = getattr(owner, name, None)
    if not isinstance(getattr(owner, last, None), nn.Module):
        raise InputError(f"strip={dotted!r}: the model has no submodule of that name")
    setattr(owner, last, nn.Identity())


def build_network(
    model: str, weights_file: str | None, strip: str | None, options: dict[str, Any]
) -> nn.Module:
    """``model(**options)`` with ``weights_file`` loaded and ``strip`` replaced by identity."""
    try:
        net = import_callable(model)(**options)
    except TypeError as error:  # model_options the builder does not take
        raise InputError(f"extractor model {model!r} with options {options}: {error}") from error
    if not isinstance(net, nn.Module):
        raise InputError(f"extractor model {model!r} returned {type(net).__name__}, not a Module")
    if weights_file is not None:
        load_weights(net, weights_file, strip)
    if strip is not None:
        strip_part(net, strip)
    return net


def extractor_name(model: str, weights_file: str | None, strip: str | None) -> str:
    """``<model>[+<weights file stem>][-no-<strip>]``: stored with the features and usable in a
    folder name."""
    name = model + (f"+{Path(weights_file).stem}" if weights_file else "")
    return name + (f"-no-{strip}" if strip else "")


class TorchModelExtractor:
    """Tiles uint8 ``[B, H, W, 3]`` → resized to ``input_px`` (bilinear, antialiased), scaled to
    [0, 1] and normalised by ``mean``/``std`` → the network → flattened float32 ``[B, dim]``. The
    network runs in eval mode without gradients; ``dim`` comes from one dummy forward pass."""

    def __init__(
        self,
        model: str,
        weights_file: str | None = None,
        input_px: int = 224,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        strip: str | None = None,
        device: str = "cpu",
        model_options: dict[str, Any] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.net = build_network(model, weights_file, strip, model_options or {})
        self.net = self.net.eval().requires_grad_(False).to(self.device)
        self.input_px = input_px
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.name = extractor_name(model, weights_file, strip)
        self.dim = self._probe(model)

    def _probe(self, model: str) -> int:
        """Feature width D from one forward pass on a black image."""
        dummy = torch.zeros(1, 3, self.input_px, self.input_px, device=self.device)
        try:
            return self._forward(dummy).shape[1]
        except RuntimeError as error:
            raise InputError(
                f"extractor model {model!r}: a forward pass on {list(dummy.shape)} failed ({error})"
            ) from error

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Normalised network output ``[B, D]`` of images ``[B, 3, input_px, input_px]`` in [0, 1]."""
        with torch.inference_mode():
            return self.net((batch - self.mean) / self.std).flatten(1).float()

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        """Features float32 ``[B, dim]`` of uint8 tiles ``[B, H, W, 3]``."""
        batch = torch.from_numpy(check_tiles(tiles)).to(self.device).permute(0, 3, 1, 2)
        batch = batch.float() / 255
        if batch.shape[-2:] != (self.input_px, self.input_px):
            size = (self.input_px, self.input_px)
            batch = F.interpolate(batch, size=size, mode="bilinear", antialias=True)
        return self._forward(batch).cpu().numpy()
