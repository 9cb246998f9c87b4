import pytest
import torch

from core.ops import attention_pool, segment_softmax

CU = torch.tensor([0, 3, 3, 8, 9], dtype=torch.int32)


def test_softmax_within_each_segment(gen):
    scores = torch.randn(9, 2, generator=gen, dtype=torch.float64)
    out = segment_softmax(scores, CU)
    for start, end in [(0, 3), (3, 8), (8, 9)]:
        torch.testing.assert_close(out[start:end], scores[start:end].softmax(0))


def test_mask_hides_instances_and_empty_segments_get_zeros(gen):
    scores = torch.randn(9, 1, generator=gen, dtype=torch.float64) * 50  # large: stability matters
    mask = torch.ones(9, 1, dtype=torch.bool)
    mask[[1, 4]] = False
    mask[8] = False  # the last bag has no visible instance
    out = segment_softmax(scores, CU, mask=mask)
    assert out[[1, 4, 8]].eq(0).all()
    torch.testing.assert_close(out[0:3].sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(out[3:8][mask[3:8]], scores[3:8][mask[3:8]].softmax(0))


def test_attention_pool_is_weighted_sum_with_grads(gen):
    scores = torch.randn(9, 3, generator=gen, dtype=torch.float64).requires_grad_()
    values = torch.randn(9, 5, generator=gen, dtype=torch.float64).requires_grad_()
    pooled, weights = attention_pool(scores, values, CU)
    assert pooled.shape == (4, 3, 5)
    for bag, (start, end) in enumerate([(0, 3), (3, 3), (3, 8), (8, 9)]):
        expected = scores[start:end].softmax(0).T @ values[start:end]
        torch.testing.assert_close(
            pooled[bag], expected if end > start else torch.zeros(3, 5).double()
        )
    torch.autograd.gradcheck(lambda s, v: attention_pool(s, v, CU)[0], (scores, values))
    assert weights.shape == (9, 3)


def test_bad_input():
    with pytest.raises(ValueError, match="must end at"):
        segment_softmax(torch.randn(5), CU)
    with pytest.raises(ValueError, match="scores contains NaN"):
        segment_softmax(torch.full((9,), float("nan")), CU)
    with pytest.raises(ValueError, match="mask must be boolean"):
        segment_softmax(torch.randn(9), CU, mask=torch.ones(9))
    with pytest.raises(ValueError, match="instance counts"):
        attention_pool(torch.randn(9, 1), torch.randn(8, 4), CU)
    with pytest.raises(ValueError, match="has no Triton kernel"):
        segment_softmax(torch.randn(9), CU, backend="triton")
