"""STKIM on a bag benchmark where a few instances decide: bags of scikit-learn's 8×8 digits,
positive when the chosen digit is present (5–20 times among 50–100 instances, by default).

``python -m apps.wsi.digits`` trains ABMIL, ABMIL + STKIM, MBA alone (5 branches, no STKIM) and
ACMIL (5 branches + STKIM) with the same seeds and prints, on held-out bags, AUROC and how
concentrated attention is: the mass on the top-1 and top-K instances, the normalised entropy and the
mass on the key instances (ACMIL §3.3 claims STKIM spreads attention beyond the few most salient
instances).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from tqdm.auto import tqdm

from apps.wsi.metrics import auroc_one_vs_rest
from apps.wsi.model import ACMIL, ACMILConfig, mil_loss
from core.inspect import head_statistics

VARIANTS = {
    "ABMIL": ACMILConfig(inner_dim=64, attention_dim=32, n_branches=1, top_k=0),
    "ABMIL + STKIM": ACMILConfig(inner_dim=64, attention_dim=32, n_branches=1),
    "MBA (5 branches, no STKIM)": ACMILConfig(inner_dim=64, attention_dim=32, top_k=0),
    "ACMIL (MBA + STKIM)": ACMILConfig(inner_dim=64, attention_dim=32),
}


@dataclass
class DigitBags:
    """Bags as packed features ``[T, 64]`` with offsets ``cu_seqlens [N+1]``, bag labels ``[N]``
    and the instances that are the chosen digit ``[T]``."""

    features: torch.Tensor
    cu_seqlens: torch.Tensor
    labels: torch.Tensor
    key_instances: torch.Tensor

    def batches(self, size: int, generator: torch.Generator) -> list[DigitBags]:
        """Shuffled batches of ``size`` bags."""
        order = torch.randperm(len(self.labels), generator=generator)
        return [self.select(order[i : i + size]) for i in range(0, len(order), size)]

    def select(self, bags: torch.Tensor) -> DigitBags:
        starts, ends = self.cu_seqlens[bags].long(), self.cu_seqlens[bags + 1].long()
        rows = torch.cat([torch.arange(s, e) for s, e in zip(starts, ends, strict=True)])
        cu = torch.zeros(len(bags) + 1, dtype=torch.int32)
        cu[1:] = (ends - starts).cumsum(0)
        return DigitBags(self.features[rows], cu, self.labels[bags], self.key_instances[rows])


def digit_bags(
    n_bags: int, digit: int, rng: np.random.Generator, size: tuple[int, int] = (50, 100),
    key_count: tuple[int, int] = (1, 5),
) -> DigitBags:  # fmt: skip
    """``n_bags`` bags, half positive: ``size`` instances drawn from the other digits, a positive bag
    with ``key_count`` of them replaced by images of ``digit``."""
    images, targets = load_digits(return_X_y=True)
    images = images.astype(np.float32) / 16.0
    keys, others = np.flatnonzero(targets == digit), np.flatnonzero(targets != digit)
    rows, labels, cu = [], [], [0]
    for i in range(n_bags):
        members = rng.choice(others, rng.integers(size[0], size[1] + 1))
        positive = i % 2 == 1
        if positive:
            count = rng.integers(key_count[0], key_count[1] + 1)
            members[rng.choice(len(members), count, replace=False)] = rng.choice(keys, count)
        rows.append(members)
        labels.append(int(positive))
        cu.append(cu[-1] + len(members))
    index = np.concatenate(rows)
    return DigitBags(torch.from_numpy(images[index]), torch.tensor(cu, dtype=torch.int32),
                     torch.tensor(labels), torch.from_numpy(targets[index] == digit))  # fmt: skip


def train(config: ACMILConfig, bags: DigitBags, epochs: int, seed: int) -> ACMIL:
    """AdamW (lr 1e-3, as for a small problem) on batches of 8 packed bags."""
    torch.manual_seed(seed)
    model = ACMIL(config, bags.features.shape[1], 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-5)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in bags.batches(8, generator):
            output = model(batch.features, batch.cu_seqlens, generator)
            losses = mil_loss(output, batch.labels, batch.cu_seqlens, config.diversity_weight)
            loss = losses["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def measure(model: ACMIL, bags: DigitBags, top_k: int) -> dict[str, float]:
    """AUROC of the slide head; over positive bags, the slide attention's top-K mass, normalised
    entropy and mass on the key instances (the chosen digit)."""
    output = model(bags.features, bags.cu_seqlens)
    probs = output.slide_logits.softmax(-1)[:, 1].numpy()
    slide_weights = output.weights.mean(1)
    masses, top1, entropies, key_mass = [], [], [], []
    for b in (bags.labels == 1).nonzero().flatten().tolist():
        start, end = int(bags.cu_seqlens[b]), int(bags.cu_seqlens[b + 1])
        w = slide_weights[start:end]
        stats = head_statistics(w.view(1, 1, 1, -1), top_k=top_k)
        masses.append(float(stats.topk_mass))
        top1.append(float(stats.top1_mass))
        entropies.append(float(stats.normalized_entropy))
        key_mass.append(float(w[bags.key_instances[start:end]].sum()))
    return {"AUROC": auroc_one_vs_rest(probs, bags.labels.numpy() == 1),
            "top-1 mass": float(np.mean(top1)), f"top-{top_k} mass": float(np.mean(masses)),
            "normalised entropy": float(np.mean(entropies)),
            "mass on key instances": float(np.mean(key_mass))}  # fmt: skip


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digit", type=int, default=9)
    parser.add_argument("--train_bags", type=int, default=400)
    parser.add_argument("--test_bags", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--key_min", type=int, default=5)
    parser.add_argument("--key_max", type=int, default=20)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    keys = (args.key_min, args.key_max)
    train_bags = digit_bags(args.train_bags, args.digit, rng, key_count=keys)
    test_bags = digit_bags(args.test_bags, args.digit, rng, key_count=keys)
    top_k = VARIANTS["ACMIL (MBA + STKIM)"].top_k
    rows = {}
    runs = [(name, seed) for name in VARIANTS for seed in range(args.seeds)]
    for name, seed in tqdm(runs, desc="training"):
        model = train(VARIANTS[name], train_bags, args.epochs, seed)
        rows.setdefault(name, []).append(measure(model, test_bags, top_k))
    columns = list(next(iter(rows.values()))[0])
    lines = [f"| model | {' | '.join(columns)} |", "|---" * (len(columns) + 1) + "|"]
    for name, results in rows.items():
        cells = [f"{np.mean([r[c] for r in results]):.3f} ± {np.std([r[c] for r in results]):.3f}"
                 for c in columns]  # fmt: skip
        lines.append(f"| {name} | {' | '.join(cells)} |")
    table = "\n".join(lines)
    print(f"digit {args.digit}; {args.train_bags} training / {args.test_bags} test bags; "
          f"{args.epochs} epochs; mean ± sd over {args.seeds} seeds\n\n{table}")  # fmt: skip
    return table


if __name__ == "__main__":
    main()
