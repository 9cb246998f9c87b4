"""OAT's pieces: the positional code, the CNN's fused first block, masking, causality, generation."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from apps.scanpath.cnn import CropCNN
from apps.scanpath.decode import generate
from apps.scanpath.model import EOS, OAT, OATConfig
from apps.scanpath.positional import gaussian_position_codes, gaussian_similarity

TINY = OATConfig(d_model=32, n_heads=2, d_ff=32, encoder_layers=2, decoder_layers=2, pointer_dim=32)
GRID, CROP = (3, 4), (30, 30)


def cosine_matrix(codes: torch.Tensor) -> torch.Tensor:
    unit = F.normalize(codes.double(), dim=1)
    return unit @ unit.T


def test_position_code_similarity_is_the_gaussian_of_grid_distance() -> None:
    codes = gaussian_position_codes((6, 14), 256, sigma=2.0)
    cos = cosine_matrix(codes)
    torch.testing.assert_close(cos, gaussian_similarity((6, 14), 2.0), atol=1e-5, rtol=0)
    # along a row, similarity to the first cell falls with distance: 1, e^{-1/8}, e^{-4/8}, ...
    row = cos[0, :14]
    assert torch.all(row[1:] < row[:-1])
    assert row[2].item() == pytest.approx(torch.exp(torch.tensor(-0.5)).item(), abs=1e-5)
    torch.testing.assert_close(codes.norm(dim=1), torch.full((84,), 16.0))


def test_position_codes_of_a_large_grid_are_the_best_low_rank_fit() -> None:
    cos = cosine_matrix(gaussian_position_codes((20, 20), 64))
    error = (cos - gaussian_similarity((20, 20), 2.0)).abs()
    assert error.max() < 0.1  # a σ = 2 kernel is nearly rank-64 on 400 cells
    near = cos[0, 1]  # neighbours stay more similar than far cells
    assert near > cos[0, 5] > cos[0, 399] - 1e-6


def reference_cnn(cnn: CropCNN, crops: torch.Tensor) -> torch.Tensor:
    """The CNN written plainly: conv → ReLU → pool, twice, then FC."""
    x = crops.double().div(255).sub(0.5)
    x = F.max_pool2d(torch.relu(cnn.conv1(x)), 5)
    x = F.max_pool2d(torch.relu(cnn.conv2(x)), 3)
    return cnn.fc(x.flatten(1))


@pytest.mark.parametrize("count", [3, 150])  # 150 crops: two chunks of the fused first block
def test_fused_cnn_matches_the_plain_cnn_and_its_gradients(
    gen: torch.Generator, count: int
) -> None:
    torch.manual_seed(0)
    cnn = CropCNN((40, 30), 16).double()  # float64 both: no near-tie picks a different maximum
    crops = torch.randint(0, 256, (count, 3, 40, 30), generator=gen, dtype=torch.uint8)
    plain = copy.deepcopy(cnn).double()
    out, expected = cnn(crops), reference_cnn(plain, crops)
    torch.testing.assert_close(out, expected)
    grad = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    ours = torch.autograd.grad(out, list(cnn.parameters()), grad)
    theirs = torch.autograd.grad(expected, list(plain.parameters()), grad)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


def test_too_small_crops_are_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        CropCNN((28, 40), 8)


def scene_batch(gen: torch.Generator, sizes: list[int]) -> tuple[torch.Tensor, ...]:
    """Random displays of ``sizes`` objects padded to the largest: crops, cells, object mask, and
    targets (each display's last object)."""
    S, N = len(sizes), max(sizes)
    crops = torch.randint(0, 256, (S, 1 + N, 3, *CROP), generator=gen, dtype=torch.uint8)
    cells = torch.stack(
        [
            torch.randint(0, GRID[0], (S, N), generator=gen),
            torch.randint(0, GRID[1], (S, N), generator=gen),
        ],
        dim=-1,
    )
    mask = torch.arange(N)[None] < torch.tensor(sizes)[:, None]
    return crops, cells, mask, torch.tensor(sizes) - 1


def test_padding_objects_changes_nothing(gen: torch.Generator) -> None:
    model = OAT(TINY, GRID, CROP).eval()
    crops, cells, mask, targets = scene_batch(gen, [5, 9])
    inputs = torch.tensor([[0, 1, 3, 2]])
    alone = model(
        crops[:1, :6], cells[:1, :5], mask[:1, :5], targets[:1], torch.tensor([0]), inputs
    )
    padded = model(crops, cells, mask, targets, torch.tensor([0]), inputs)
    torch.testing.assert_close(padded[..., :6], alone, atol=1e-5, rtol=1e-5)
    assert torch.isinf(padded[..., 6:]).all()  # padding objects can never be chosen


def test_the_target_token_knows_where_the_target_is_only_when_asked(gen: torch.Generator) -> None:
    crops, cells, mask, targets = scene_batch(gen, [8])
    moved = targets - 3  # the same pictures, another object called the target
    inputs = torch.tensor([[0, 2, 5]])
    for told in (True, False):
        torch.manual_seed(0)
        model = OAT(dataclasses.replace(TINY, target_position=told), GRID, CROP).eval()
        a = model(crops, cells, mask, targets, torch.tensor([0]), inputs)
        b = model(crops, cells, mask, moved, torch.tensor([0]), inputs)
        assert torch.allclose(a, b) != told


def test_decoder_is_causal(gen: torch.Generator) -> None:
    model = OAT(TINY, GRID, CROP).eval()
    crops, cells, mask, targets = scene_batch(gen, [8])
    inputs = torch.tensor([[0, 4, 2, 7, 1]])
    changed = inputs.clone()
    changed[0, 3:] = torch.tensor([3, 8])
    a = model(crops, cells, mask, targets, torch.tensor([0]), inputs)
    b = model(crops, cells, mask, targets, torch.tensor([0]), changed)
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_scanpaths_share_their_display_encoding(gen: torch.Generator) -> None:
    """Two scanpaths on one display in one batch give what each gives alone."""
    model = OAT(TINY, GRID, CROP).eval()
    crops, cells, mask, targets = scene_batch(gen, [6, 7])
    inputs = torch.tensor([[0, 1, 2], [0, 5, 5], [0, 3, 1]])
    both = model(crops, cells, mask, targets, torch.tensor([1, 1, 0]), inputs)
    alone = model(crops[1:], cells[1:], mask[1:], targets[1:], torch.tensor([0]), inputs[1:2])
    torch.testing.assert_close(both[1:2], alone, atol=1e-5, rtol=1e-5)


def test_incremental_generation_matches_full_recomputation(gen: torch.Generator) -> None:
    model = OAT(TINY, GRID, CROP).eval()
    encoded = model.encode(*scene_batch(gen, [6, 9]))
    index = torch.tensor([0, 1])
    paths = generate(model, encoded, index, max_steps=7)
    for row, path in enumerate(paths):
        assert 1 <= len(path) <= 7  # never EOS first
        assert path.max() < (6, 9)[row]
        tokens = torch.tensor([[0, *(path + 1).tolist()]])
        logits = model.decode(encoded, index[row : row + 1], tokens)[0]
        logits[0, EOS] = float("-inf")
        greedy = logits.argmax(-1)
        assert greedy[: len(path)].tolist() == (path + 1).tolist()
        if len(path) < 7:
            assert greedy[len(path)].item() == EOS


def test_sampled_generation_repeats_for_a_seed(gen: torch.Generator) -> None:
    model = OAT(TINY, GRID, CROP).eval()
    encoded = model.encode(*scene_batch(gen, [8]))
    index = torch.zeros(6, dtype=torch.long)
    runs = [
        generate(model, encoded, index, 10, sample=True, generator=torch.Generator().manual_seed(3))
        for _ in range(2)
    ]
    assert all((a == b).all() for a, b in zip(*runs, strict=True))
    assert len({tuple(p.tolist()) for p in runs[0]}) > 1  # samples differ from one another


def test_overfits_a_few_fixed_scanpaths(gen: torch.Generator) -> None:
    torch.manual_seed(0)
    model = OAT(dataclasses.replace(TINY, dropout=0.0), GRID, CROP)
    crops, cells, mask, goals = scene_batch(gen, [7, 9, 6])
    index = torch.tensor([0, 1, 2])
    paths = [[3, 3, 1, 6], [8, 2, 0], [4, 5]]
    inputs = torch.zeros(3, 5, dtype=torch.long)
    targets = torch.full((3, 5), -100)
    for row, path in enumerate(paths):
        tokens = torch.tensor(path) + 1
        inputs[row, 1 : len(path) + 1] = tokens
        targets[row, : len(path)] = tokens
        targets[row, len(path)] = EOS
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(200):
        logits = model(crops, cells, mask, goals, index, inputs)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
