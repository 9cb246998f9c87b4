"""How ``nox -s demo`` presents the wsi app: slide metrics, how well attention finds the planted
tumour, and a mean-pooling baseline on the same features (read by :mod:`core.train.demo`)."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from apps.wsi.data import WSIDataModule
from apps.wsi.metrics import slide_scores
from core.train.cli import ManyheadsCLI
from core.train.report import Baseline, DemoCard, MetricRow


def mean_pooled(data: WSIDataModule, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Each bag's mean feature ``[N, F]`` and class index ``[N]``."""
    bags = [data.datasets[split][i] for i in range(len(data.datasets[split]))]
    index = {name: i for i, name in enumerate(data.class_names)}
    return np.stack([b.features.mean(0) for b in bags]), np.array([index[b.label] for b in bags])


def mean_pooling_metrics(cli: ManyheadsCLI) -> dict[str, float]:
    """Logistic regression on mean-pooled features, fitted on the training bags, scored on the
    test bags: what the slide label costs without attention."""
    data: WSIDataModule = cli.datamodule
    train_x, train_y = mean_pooled(data, "train")
    test_x, test_y = mean_pooled(data, "test")
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    classifier = LogisticRegression(max_iter=2000).fit((train_x - mean) / std, train_y)
    probs = classifier.predict_proba((test_x - mean) / std)
    scores = slide_scores(probs, test_y, data.class_names)
    return {f"test/{name}": value for name, value in scores.items()}


CARD = DemoCard(
    title="ACMIL: whole-slide image classification from a bag of tiles",
    task=(
        "**Task.** Label a whole slide (tumour or normal) from its tiles, without knowing which "
        "tiles show the tumour. **Data.** The built-in synthetic slides (here the quick set of "
        "`configs/wsi/small.yaml`: 40 slides): pyramidal TIFFs that "
        "OpenSlide opens, pink tissue with nuclei, half of them with small planted tumour regions "
        "(denser, darker nuclei); tissue detected on the thumbnail, tiled at 0.5 µm/px into 224-px "
        "tiles, each tile described by built-in colour and texture statistics. **Model.** ACMIL "
        "(Zhang et al. 2024): gated attention pooling with 5 branches kept apart by a diversity "
        "loss, and stochastic top-K instance masking in training so the model cannot rest on a "
        "few tiles. Tutorial: `docs/wsi.md`."
    ),
    paper_source=(
        "Zhang et al. 2024 report CAMELYON16, BRACS and LBC on CNN/ViT features, not these "
        "synthetic slides, so there is no paper column; the baseline scores the same test slides"
    ),
    metrics=(
        MetricRow("test/AUROC", "AUROC", "macro, one class against the rest", fmt="{:.3f}"),
        MetricRow("test/F1", "F1", "macro mean of the classes' F1", fmt="{:.3f}"),
        MetricRow("test/accuracy", "accuracy", "share of slides labelled right", fmt="{:.1%}"),
        MetricRow(
            "test/tumour_r_precision",
            "tumour R-precision",
            "of a tumour slide's n most attended tiles (n: its tumour tiles), the share inside "
            "the planted tumour",
            fmt="{:.1%}",
        ),
        MetricRow(
            "test/tumour_tile_share",
            "tumour tile share",
            "share of a tumour slide's tiles that are tumour (what chance scores on both)",
            fmt="{:.1%}",
        ),
    ),
    baseline=Baseline(
        "*mean pooling*: logistic regression on each slide's mean tile feature, fitted on the "
        "training slides, scored on the same test slides",
        mean_pooling_metrics,
    ),
    overlays=("configs/wsi/small.yaml",),
    figures={
        "heatmaps": "Test slides: the thumbnail with the planted tumour outlined, then each "
        "branch's attention and the branches' mean (what the slide classifier pools with).",
    },
    full_run_overlays=("configs/wsi/clam.yaml",),
    full_run_note=(
        "CLAM-format features of a public cohort (e.g. CAMELYON16, 270 + 129 slides); put "
        "`clam_features/` and `labels.csv` in `data/wsi/` first (see `docs/wsi.md`); compare with "
        "the paper's Table 1 for the same features."
    ),
)
