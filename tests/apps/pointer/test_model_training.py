"""The network learns: a tiny fixed set is overfitted and decoded back exactly."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from apps.pointer.data import IGNORE_INDEX, collate
from apps.pointer.decode import beam_search
from apps.pointer.generate import generate
from apps.pointer.metrics import PointerMetrics
from apps.pointer.model import PointerConfig, PointerNetwork


def test_one_call_teacher_forcing_equals_stepping():
    torch.manual_seed(0)
    points, targets = generate("tsp", (5, 7), 6, seed=2)
    batch = collate([(p, t, None) for p, t in zip(points, targets, strict=True)])
    model = PointerNetwork(PointerConfig(hidden_dim=16, init_range=None)).eval()
    logits = model(batch.points, batch.point_mask, batch.targets)
    encoded = model.encode(batch.points, batch.point_mask)
    previous = torch.full((len(points),), -1)
    state = encoded.state
    for step in range(batch.targets.shape[1]):
        step_logits, state = model.step(encoded, previous, state, encoded.key_mask)
        torch.testing.assert_close(step_logits, logits[:, step])
        previous = batch.targets[:, step].clamp(min=0)


def test_overfits_a_few_fixed_hulls():
    torch.manual_seed(0)
    points, targets = generate("convex_hull", (5, 5), 8, seed=0)
    batch = collate([(p, t, None) for p, t in zip(points, targets, strict=True)])
    model = PointerNetwork(PointerConfig(hidden_dim=32, init_range=None))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        logits = model(batch.points, batch.point_mask, batch.targets)
        loss = F.cross_entropy(
            logits.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE_INDEX
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2
    outputs = beam_search(model.eval(), batch.points, batch.point_mask, "convex_hull")
    metrics = PointerMetrics("convex_hull")
    metrics.update(points, outputs, targets)
    assert metrics.compute()["seq_acc"] >= 0.75
