"""Tile feature extractors: the built-in ColourTexture, a torch network, and the factory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apps.wsi.extractors import (
    ColourTexture,
    FeatureExtractor,
    TorchModelExtractor,
    build_extractor,
)
from apps.wsi.handcrafted import GROUPS
from core.train.errors import InputError
from tests.apps.wsi.tinynet import TinyNet

TINY = "tests.apps.wsi.tinynet.tiny_net"


def stripes(batch: int, period: int, seed: int = 0) -> np.ndarray:
    """Purple/pink vertical stripes ``[batch, 64, 64, 3]`` of ``period`` px, with a little noise."""
    columns = (np.arange(64) // (period // 2)) % 2 == 0
    tile = np.where(columns[None, :, None], (120, 50, 150), (235, 160, 200))
    tiles = np.broadcast_to(tile, (batch, 64, 64, 3)).astype(float)
    noise = np.random.default_rng(seed).normal(0, 4, tiles.shape)
    return np.clip(tiles + noise, 0, 255).astype(np.uint8)


def blotches(batch: int, seed: int = 1) -> np.ndarray:
    """Pale pink tiles ``[batch, 64, 64, 3]`` with a few dark purple dots (nuclei)."""
    rng = np.random.default_rng(seed)
    tiles = np.full((batch, 64, 64, 3), (240, 200, 220), float)
    for tile in tiles:
        for y, x in rng.integers(4, 60, (12, 2)):
            tile[y - 2 : y + 3, x - 2 : x + 3] = (70, 30, 110)
    return np.clip(tiles + rng.normal(0, 4, tiles.shape), 0, 255).astype(np.uint8)


def column(group: str, index: int) -> int:
    """Output column of feature ``index`` of the group whose name starts with ``group``."""
    names = [name.split(":")[0] for name, _ in GROUPS]
    return sum(width for _, width in GROUPS[: names.index(group)]) + index


@pytest.fixture
def weights(tmp_path):
    """A TinyNet state dict saved to a file, and the net."""
    torch.manual_seed(0)
    net = TinyNet()
    path = tmp_path / "tiny.pth"
    torch.save(net.state_dict(), path)
    return path, net


def test_colour_texture_shape_finite_and_deterministic():
    extractor = ColourTexture()
    tiles = np.concatenate([stripes(3, 8), blotches(2), np.full((1, 64, 64, 3), 255, np.uint8)])
    features = extractor(tiles)
    assert extractor.dim == sum(width for _, width in GROUPS) == 105
    assert features.shape == (6, 105) and features.dtype == np.float32
    assert np.isfinite(features).all()
    assert np.array_equal(features, extractor(tiles.copy()))
    assert np.allclose(features[3], extractor(tiles[3:4])[0], atol=1e-5)  # batch-independent
    assert isinstance(extractor, FeatureExtractor)


def test_colour_texture_tells_textures_apart():
    extractor = ColourTexture()
    fine, coarse, dots = extractor(stripes(4, 4)), extractor(stripes(4, 16)), extractor(blotches(4))
    spread = np.concatenate([fine, coarse, dots]).std(0) + 1e-6
    within = np.abs((fine[0] - fine[1]) / spread).mean()
    assert np.abs((fine[0] - coarse[0]) / spread).mean() > 5 * within
    assert np.abs((fine[0] - dots[0]) / spread).mean() > 5 * within
    lbp = slice(column("lbp", 0), column("lbp", 20))
    assert np.allclose(fine[:, lbp].reshape(4, 2, 10).sum(-1), 1)  # two histograms
    assert np.abs(fine[0, lbp] - coarse[0, lbp]).sum() > 0.5


def test_colour_texture_sees_nuclei_and_stain():
    extractor = ColourTexture()
    dots = extractor(blotches(1))[0]
    plain = extractor(np.full((1, 64, 64, 3), (240, 200, 220), np.uint8))[0]
    haematoxylin_mean, small_nuclei = column("stains", 0), column("density", 3)
    assert dots[haematoxylin_mean] > plain[haematoxylin_mean] + 0.03
    assert dots[small_nuclei] == pytest.approx(12 / 64**2 * 1000)  # 12 dots on 64×64 px
    assert plain[small_nuclei] == 0


def test_colour_texture_refuses_floats():
    with pytest.raises(InputError, match="uint8"):
        ColourTexture()(np.zeros((1, 32, 32, 3), np.float32))


def test_torch_extractor_strips_the_head_and_loads_weights(weights):
    path, net = weights
    extractor = TorchModelExtractor(TINY, str(path), input_px=32, strip="fc")
    tiles = stripes(5, 8)
    features = extractor(tiles)
    assert extractor.dim == 8 and features.shape == (5, 8) and features.dtype == np.float32
    batch = torch.nn.functional.interpolate(
        torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255,
        size=(32, 32),
        mode="bilinear",
        antialias=True,
    )
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = net.pool(net.conv((batch - mean) / std).relu()).flatten(1)
    assert np.allclose(features, expected.numpy(), atol=1e-5)
    assert extractor.name == f"{TINY}+tiny-no-fc"


def test_torch_extractor_keeps_the_head_without_strip():
    assert TorchModelExtractor(TINY, input_px=16).dim == 3


def test_headless_weights_load_when_stripping(tmp_path, weights):
    _, net = weights
    path = tmp_path / "headless.pth"
    torch.save({k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}, path)
    assert TorchModelExtractor(TINY, str(path), input_px=16, strip="fc").dim == 8
    with pytest.raises(InputError, match=r"headless\.pth.*missing: fc\.weight"):
        TorchModelExtractor(TINY, str(path), input_px=16)


def test_wrong_weights_name_the_file(tmp_path):
    wide = tmp_path / "wide.pth"
    torch.save(TinyNet(width=16).state_dict(), wide)
    with pytest.raises(InputError, match=r"wide\.pth.*do not fit"):
        TorchModelExtractor(TINY, str(wide), strip="fc")
    extra = tmp_path / "extra.pth"
    torch.save({**TinyNet().state_dict(), "other.bias": torch.zeros(2)}, extra)
    with pytest.raises(InputError, match=r"extra\.pth.*unexpected: other\.bias"):
        TorchModelExtractor(TINY, str(extra))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match=r"junk\.pth.*not a PyTorch state dict"):
        TorchModelExtractor(TINY, str(junk))
    with pytest.raises(InputError, match=r"absent\.pth.*no such file"):
        TorchModelExtractor(TINY, str(tmp_path / "absent.pth"))


def test_model_import_errors_are_input_errors():
    with pytest.raises(InputError, match=r"torchvisionx\.models\.resnet50.*cannot import"):
        TorchModelExtractor("torchvisionx.models.resnet50")
    with pytest.raises(InputError, match="no submodule"):
        TorchModelExtractor(TINY, strip="head")


def test_build_extractor_by_name():
    assert isinstance(build_extractor(), ColourTexture)
    assert isinstance(build_extractor("builtin", weights_file=None, strip=None), ColourTexture)
    assert build_extractor(TINY, weights_file=None, input_px=16, strip="fc").dim == 8
    with pytest.raises(InputError, match="unknown feature extractor 'resnet'"):
        build_extractor("resnet")
    with pytest.raises(InputError, match=r"builtin.*takes no options, got \['weights_file'\]"):
        build_extractor("builtin", weights_file="x.pth", strip=None)
    with pytest.raises(InputError, match="unexpected keyword argument 'colour'"):
        build_extractor(TINY, colour="red")
