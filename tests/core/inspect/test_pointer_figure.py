"""The pointer app's drawing of a recorded decoding: one panel per step, from a tiny PointerNetwork."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from apps.pointer.decode import beam_search
from apps.pointer.model import PointerConfig, PointerNetwork
from apps.pointer.plots import pointer_steps_figure
from core.inspect import record
from core.nn import PointerAttention


def test_draws_each_decoding_step(gen: torch.Generator) -> None:
    torch.manual_seed(0)
    net = PointerNetwork(PointerConfig(hidden_dim=16, init_range=None)).eval()
    sizes = [5, 4]
    points = torch.rand(2, 5, 2, generator=gen)
    point_mask = torch.arange(5) < torch.tensor(sizes)[:, None]
    with record(net, "weights") as recording:
        outputs = beam_search(net, points, point_mask, "convex_hull")
    (layer,) = recording.layer_names(PointerAttention)
    (decoded,) = [batch for batch in recording.weights[layer] if batch.steps > 1]
    steps = [w[0].numpy() for w in decoded.weights]  # [T, N + 1] per instance
    for weights, output in zip(steps, outputs, strict=True):
        assert (weights.argmax(-1)[: len(output)] == output).all()  # greedy picks the argmax
    raw = [points[i, : sizes[i]].numpy() for i in range(2)]
    figure = pointer_steps_figure(raw, steps, max_steps=4)
    panels = [ax for ax in figure.axes if ax.axison]
    shown = [min(4, len(output) + 1) for output in outputs]  # up to and including EOS
    assert len(panels) == sum(shown)
    assert figure.axes[0].collections  # the points were drawn
    plt.close(figure)
