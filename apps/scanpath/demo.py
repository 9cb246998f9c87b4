"""How ``nox -s demo`` presents the scanpath app: the task, the scanpath metrics, and the
target-similarity searcher scored on the same test displays (read by :mod:`core.train.demo`)."""

from __future__ import annotations

from core.train.cli import ManyheadsCLI
from core.train.report import Baseline, DemoCard, MetricRow

SHOWN = ("SS", "Lev", "MM", "found", "length", "delta")


def similarity_metrics(cli: ManyheadsCLI) -> dict[str, float]:
    """The target-similarity greedy searcher's test metrics, computed in the same ``test`` run."""
    logged = cli.trainer.callback_metrics
    return {f"test/{name}": float(logged[f"test/target_similarity/{name}"]) for name in SHOWN}


CARD = DemoCard(
    title="OAT: where people look while searching a display for a target",
    task=(
        "**Task.** Given a display of objects and a target, predict the sequence of objects a "
        "person fixates until they find it. **Data.** The built-in visual-search simulator: "
        "1,000 displays of 8–60 objects on a grid, each drawn as a small picture, and four "
        "simulated searchers per display guided by target similarity and proximity, with "
        "inhibition of return, refixations and a stopping rule; displays split 80/10/10. "
        "**Model.** OAT (Fang et al. 2024): a transformer encoder over object tokens (a CNN over "
        "each object's crop ⊕ a positional code whose similarity falls off as a Gaussian of grid "
        "distance) and the target's picture; a decoder that points at the next object or stops. "
        "Tutorial: `docs/scanpath.md`."
    ),
    paper_source=(
        "Fang et al. 2024 report the Amazon book-cover data (with cover pictures) and their own "
        "shelf data, not this simulator, so there is no paper column; the baseline scores the "
        "same test displays"
    ),
    metrics=(
        MetricRow(
            "test/SS", "SS", "sequence score (Needleman–Wunsch); higher is better", fmt="{:.3f}"
        ),
        MetricRow(
            "test/Lev", "Levenshtein", "edits to a human scanpath; lower is better", fmt="{:.2f}"
        ),
        MetricRow(
            "test/MM", "MultiMatch", "mean of shape, direction, length, position", fmt="{:.3f}"
        ),
        MetricRow("test/found", "target found", "share ending on the target", fmt="{:.3f}"),
        MetricRow("test/length", "length", "fixations per scanpath", fmt="{:.2f}"),
        MetricRow(
            "test/delta",
            "behaviour Δ",
            "mean relative gap to humans; lower is better",
            fmt="{:.3f}",
        ),
    ),
    baseline=Baseline(
        "*target-similarity searcher*: objects visited by their appearance's similarity to the "
        "target, stopping on it, computed on the same test displays",
        similarity_metrics,
    ),
    figures={
        "scanpaths": "Generated (orange) and human (blue) scanpaths over the display's objects; "
        "the target's box is red.",
    },
    full_run_overlays=("configs/scanpath/amazon.yaml",),
    full_run_note=(
        "The Amazon book-cover search data (100 collages × 6 viewers); put `Amazon.json` in "
        "`data/scanpath/` first (see `docs/scanpath.md`)."
    ),
)
