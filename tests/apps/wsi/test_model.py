"""ACMIL / ABMIL on packed bags: STKIM masks exactly what the paper says and only in training, the
diversity loss is its formula, packing changes nothing, and the network can learn."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from apps.wsi.metrics import masked_by_stkim
from apps.wsi.model import ACMIL, ACMILConfig, diversity_loss, mil_loss, stkim_mask


def packed(lengths: list[int], gen: torch.Generator, width: int = 12) -> tuple[torch.Tensor, ...]:
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(lengths).cumsum(0)
    return torch.randn(sum(lengths), width, generator=gen), cu


@pytest.mark.parametrize("top_k,mask_drop", [(10, 0.6), (4, 0.5), (3, 1.0), (10, 0.05)])
def test_stkim_masks_int_k_drop_of_each_bags_top_k(gen, top_k, mask_drop):
    scores, cu = packed([3, 40, 1, 17], gen, width=5)
    keep = stkim_mask(scores, cu, top_k, mask_drop, gen)
    for start, end in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True):
        k = min(top_k, end - start)
        masked = ~keep[start:end]
        assert masked.sum(0).tolist() == [int(k * mask_drop)] * 5
        top = scores[start:end].topk(k, dim=0).indices
        for branch in range(5):
            rows = masked[:, branch].nonzero().flatten().tolist()
            assert set(rows) <= set(top[:, branch].tolist())


def test_stkim_draws_differ_and_follow_the_generator(gen):
    scores, cu = packed([50], gen, width=3)
    draws = {tuple(stkim_mask(scores, cu, 10, 0.6, gen).flatten().tolist()) for _ in range(8)}
    assert len(draws) > 1
    same = [stkim_mask(scores, cu, 10, 0.6, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(*same)


def test_stkim_only_in_training(gen):
    features, cu = packed([30, 20], gen)
    model = ACMIL(ACMILConfig(inner_dim=16, attention_dim=8, n_branches=3, top_k=5), 12, 2)
    output = model.train()(features, cu, gen)
    assert output.mask is not None and (~output.mask).sum() == 2 * 3 * 3
    assert torch.all(output.weights[~output.mask] == 0)
    assert model.eval()(features, cu).mask is None
    abmil = ACMIL(ACMILConfig(inner_dim=16, attention_dim=8, n_branches=1, top_k=0), 12, 2)
    assert abmil.train()(features, cu).mask is None


def test_diversity_loss_is_mean_pairwise_cosine_per_bag(gen):
    weights, cu = packed([7, 12], gen, width=4)
    weights = weights.softmax(0)
    expected = []
    for start, end in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True):
        w = weights[start:end]
        pairs = [F.cosine_similarity(w[:, i], w[:, j], dim=0) for i in range(4)
                 for j in range(i + 1, 4)]  # fmt: skip
        expected.append(torch.stack(pairs).mean())
    torch.testing.assert_close(diversity_loss(weights, cu), torch.stack(expected).mean())
    assert diversity_loss(weights[:, :1], cu) == 0


def test_packed_bags_equal_one_bag_at_a_time(gen):
    features, cu = packed([5, 9, 2], gen)
    model = ACMIL(ACMILConfig(inner_dim=16, attention_dim=8), 12, 3).eval()
    together = model(features, cu)
    for i, (start, end) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True)):
        alone = model(features[start:end], torch.tensor([0, end - start], dtype=torch.int32))
        torch.testing.assert_close(together.slide_logits[i], alone.slide_logits[0])
        torch.testing.assert_close(together.branch_logits[i], alone.branch_logits[0])
        torch.testing.assert_close(together.weights[start:end], alone.weights)


def test_slide_head_pools_with_the_branches_mean_attention(gen):
    features, cu = packed([11], gen)
    model = ACMIL(ACMILConfig(inner_dim=16, attention_dim=8), 12, 2).eval()
    output = model(features, cu)
    h = F.relu(model.reduce(features))
    slide_feature = (output.weights.mean(1, keepdim=True) * h).sum(0)
    torch.testing.assert_close(output.slide_logits[0], model.slide_head(slide_feature))


def test_abmil_loss_is_the_slide_cross_entropy_alone(gen):
    features, cu = packed([6, 8], gen)
    model = ACMIL(ACMILConfig(inner_dim=16, attention_dim=8, n_branches=1, top_k=0), 12, 2)
    labels = torch.tensor([0, 1])
    output = model(features, cu)
    losses = mil_loss(output, labels, cu)
    torch.testing.assert_close(losses["loss"], F.cross_entropy(output.slide_logits, labels))


def test_masking_the_weights_equals_masking_the_logits(gen):
    logits = torch.randn(30, 4, generator=gen)
    cu = torch.tensor([0, 30], dtype=torch.int32)
    mask = stkim_mask(logits, cu, 10, 0.6, torch.Generator().manual_seed(3))
    from_logits = logits.masked_fill(~mask, float("-inf")).softmax(0)
    from_weights = masked_by_stkim(logits.softmax(0), 10, 0.6, torch.Generator().manual_seed(3))
    torch.testing.assert_close(from_weights, from_logits)


def test_overfits_a_few_fixed_bags(gen):
    torch.manual_seed(0)
    features, cu = packed([20, 25, 15, 30], gen)
    labels = torch.tensor([0, 1, 0, 1])
    features[cu[1] : cu[1] + 3] += 3.0  # a few key instances decide the positive bags
    features[cu[3] : cu[3] + 3] += 3.0
    model = ACMIL(ACMILConfig(inner_dim=32, attention_dim=16, n_branches=3, top_k=4), 12, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        losses = mil_loss(model(features, cu, gen), labels, cu)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    model.eval()
    slide = F.cross_entropy(model(features, cu).slide_logits, labels)
    assert slide < 0.05, float(slide)


def test_standardisation_folds_into_the_first_linear_map(gen):
    features, cu = packed([9, 4], gen)
    features = features * 0.01 + 0.5  # hand-crafted features: tiny spread around a large mean
    mean, std = features.mean(0), features.std(0)
    model = ACMIL(ACMILConfig(inner_dim=16, attention_dim=8), 12, 2).eval()
    plain = model(((features - mean) / std), cu).slide_logits
    model.set_feature_statistics(mean, std)
    torch.testing.assert_close(model(features, cu).slide_logits, plain)
    assert torch.equal(model.state_dict()["feature_std"], std)  # the checkpoint carries it
