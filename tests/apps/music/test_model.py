"""The Music Transformer: causality with relative terms, the KV cache, sampling filters, overfitting."""

from __future__ import annotations

import pytest
import torch

from apps.music.model import MusicConfig, MusicTransformer
from apps.music.sample import Sampling, filter_logits, generate
from apps.music.tokens import END, START

VOCAB = 40


def tiny(
    max_relative_position: int | None, num_layers: int = 2, **overrides: object
) -> MusicTransformer:
    config = MusicConfig(
        num_layers=num_layers, d_model=32, n_heads=4, d_ff=48, dropout=0.0,
        max_relative_position=max_relative_position, **overrides,
    )  # fmt: skip
    return MusicTransformer(config, VOCAB, max_len=64).eval()


@pytest.mark.parametrize("max_relative_position", [None, 0, 3, 63])
def test_a_future_token_never_changes_earlier_logits(
    gen: torch.Generator, max_relative_position: int | None
) -> None:
    torch.manual_seed(0)
    model = tiny(max_relative_position)
    tokens = torch.randint(3, VOCAB, (2, 24), generator=gen)
    changed = tokens.clone()
    changed[:, 15:] = torch.randint(3, VOCAB, (2, 9), generator=gen)
    before, after = model(tokens), model(changed)
    torch.testing.assert_close(before[:, :15], after[:, :15])
    assert not torch.allclose(before[:, 15:], after[:, 15:])


def test_relative_distances_matter_only_within_the_clip(gen: torch.Generator) -> None:
    """With K = 0 every distance shares one embedding: one relative layer then ignores the order
    of the earlier tokens (deeper layers would not: causal prefixes differ)."""
    torch.manual_seed(1)
    model = tiny(0, num_layers=1, share_relative_across_heads=True)
    tokens = torch.randint(3, VOCAB, (1, 10), generator=gen)
    swapped = tokens.clone()
    swapped[0, [6, 8]] = tokens[0, [8, 6]]  # distances 3 and 1 from the last token
    torch.testing.assert_close(model(tokens)[:, -1], model(swapped)[:, -1], atol=1e-5, rtol=1e-5)
    assert model.decoder.layers[0].self_attn.rel_emb.shape == (1, 1, 8)
    ordered = tiny(4, num_layers=1)
    assert not torch.allclose(ordered(tokens)[:, -1], ordered(swapped)[:, -1])


@pytest.mark.parametrize("max_relative_position", [None, 5])
def test_cached_generation_draws_what_full_recomputation_draws(
    max_relative_position: int | None,
) -> None:
    torch.manual_seed(2)
    model = tiny(max_relative_position)
    primer = torch.tensor([[START, 7, 9, 11], [START, 8, 8, 30]])
    sampling = Sampling(temperature=1.3, top_k=12, top_p=0.9)
    runs = [
        generate(model, primer, 30, sampling, torch.Generator().manual_seed(5), use_cache=cache)
        for cache in (True, False)
    ]
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(runs[0][:, :4], primer)


def test_a_row_that_ends_is_padded_and_generation_stops_when_all_end() -> None:
    torch.manual_seed(3)
    model = tiny(4)
    with torch.no_grad():
        model.head.bias.fill_(-30.0)
        model.head.bias[END] = 30.0
    out = generate(model, torch.tensor([[START, 5]]), 20)
    assert out.tolist() == [[START, 5, END]]


def test_generation_refuses_more_than_max_len() -> None:
    with pytest.raises(ValueError, match="max_len 64"):
        generate(tiny(4), torch.tensor([[START] * 60]), 10)


def test_top_k_and_top_p_keep_the_expected_tokens() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.15, 0.1]]))
    kept = lambda s: filter_logits(logits, s).isfinite()[0].tolist()  # noqa: E731
    assert kept(Sampling(top_k=2)) == [True, True, False, False]
    assert kept(Sampling(top_p=0.7)) == [True, True, False, False]  # 0.5 < 0.7 ≤ 0.75
    assert kept(Sampling(top_p=0.76)) == [True, True, True, False]
    assert kept(Sampling(top_p=0.3)) == [True, False, False, False]
    scaled = filter_logits(logits, Sampling(temperature=2.0))
    torch.testing.assert_close(scaled, logits / 2)
    with pytest.raises(ValueError, match="temperature"):
        Sampling(temperature=0.0)


def test_overfits_a_short_phrase() -> None:
    torch.manual_seed(4)
    model = tiny(8)
    model.train()
    phrase = torch.tensor([[START, 10, 12, 14, 15, 17, 19, 21, 22, 20, 18, 17, 15, END]])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        logits = model(phrase[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), phrase[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    model.eval()
    greedy = generate(model, phrase[:, :2], 12, Sampling(top_k=1))
    assert torch.equal(greedy, phrase)
