"""The wsi task: ACMIL (or ABMIL) trained on packed bags, evaluated by the slide metrics and, where
tile truth is known, by how well attention finds the tumour; per-branch heatmaps over the slide."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from apps.wsi.bags import Bag
from apps.wsi.data import BagBatch
from apps.wsi.metrics import LocalisationMetrics, SlideMetrics, masked_by_stkim
from apps.wsi.model import ACMIL, ACMILConfig, MILOutput, mil_loss
from apps.wsi.plots import branch_heatmaps, stkim_table_figure
from core.inspect import Recording, head_statistics
from core.train import AppTask, as_config
from core.train.figures import run_folder, write_png

logger = logging.getLogger("apps.wsi")


@dataclass
class SlideResult:
    """One evaluated or predicted slide: its bag, class probabilities ``[C]``, the attention
    ``[N, K]`` of each branch, and (predict) the heatmap written."""

    bag: Bag
    probs: np.ndarray
    weights: np.ndarray
    heatmap: Path | None = None


def split_bags(values: torch.Tensor, cu_seqlens: torch.Tensor) -> list[np.ndarray]:
    """Packed ``[T, ...]`` → one CPU array per bag."""
    return [v.numpy() for v in values.detach().float().cpu().split(cu_seqlens.diff().tolist())]


def has_layout(bag: Bag) -> bool:
    """Whether the bag's tiles have distinct coordinates (a heatmap can be drawn)."""
    return len(bag) > 0 and len(np.unique(bag.coords, axis=0)) == len(bag)


class WSITask(AppTask):
    """Slide classification by attention-based MIL.

    Args:
        net: the network's hyper-parameters (``n_branches: 1, top_k: 0`` → ABMIL).
        feature_dim: width of the instance features; class_names: the classes (both linked from
            the datamodule).
        standardize: at the start of training, standardise the instance features by the training
            bags' per-feature mean and std (kept in the model's buffers, so the checkpoint carries
            them); hand-crafted features vary in tiny ranges, CNN features hardly need it.
        optimizer, scheduler, scheduler_interval, figure_examples: see :class:`core.train.AppTask`.
    """

    monitor = "val/AUROC+F1"  # ACMIL's model selection: validation AUROC + F1
    monitor_mode = "max"
    prediction_suffix = ".csv"

    def __init__(
        self,
        net: ACMILConfig = ACMILConfig(),
        feature_dim: int = 512,
        class_names: list[str] | None = None,
        standardize: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.config = as_config(ACMILConfig, net)
        self.class_names = list(class_names or ["negative", "positive"])
        self.standardize = standardize
        self.model = ACMIL(self.config, feature_dim, len(self.class_names))
        self.metrics = torch.nn.ModuleDict(
            {f"{stage}_metrics": SlideMetrics(self.class_names) for stage in ("val", "test")}
        )
        self.localisation = torch.nn.ModuleDict(
            {f"{stage}_localisation": LocalisationMetrics() for stage in ("val", "test")}
        )  # fmt: skip

    def on_fit_start(self) -> None:
        """Set the features' standardisation from the training bags (a fresh fit only: a resumed
        one has it in its checkpoint)."""
        statistics = getattr(self.trainer.datamodule, "feature_statistics", None)
        if self.standardize and self.trainer.global_step == 0 and statistics is not None:
            mean, std = statistics()
            self.model.set_feature_statistics(mean.to(self.device), std.to(self.device))

    def forward(self, batch: BagBatch) -> MILOutput:
        return self.model(batch.features, batch.cu_seqlens)

    def loss(
        self, output: MILOutput, labels: torch.Tensor, cu_seqlens: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return mil_loss(output, labels, cu_seqlens, self.config.diversity_weight)

    def training_step(self, batch: BagBatch, batch_idx: int) -> torch.Tensor:
        losses = self.loss(self(batch), batch.labels, batch.cu_seqlens)
        self.log_loss("train", losses["loss"], len(batch))
        for name in ("slide", "branch", "diversity"):
            self.log(f"train/{name}_loss", losses[name].detach(), batch_size=len(batch))
        return losses["loss"]

    def evaluate(self, stage: str, batch: BagBatch) -> None:
        output = self(batch)
        labelled = batch.labels >= 0
        if labelled.any():
            losses = self.loss(output, batch.labels.clamp_min(0), batch.cu_seqlens)
            self.log_loss(stage, losses["loss"], len(batch))
        probs = output.slide_logits.softmax(-1)
        self.metrics[f"{stage}_metrics"].update(probs[labelled], batch.labels[labelled])
        weights = split_bags(output.weights, batch.cu_seqlens)
        for bag, w in zip(batch.bags, weights, strict=True):
            if bag.instance_labels is not None:
                self.localisation[f"{stage}_localisation"].update(w.mean(1), bag.instance_labels)
        results = [SlideResult(b, p, w) for b, p, w in
                   zip(batch.bags, probs.float().cpu().numpy(), weights, strict=True)]  # fmt: skip
        self.keep_examples([r for r in results if has_layout(r.bag)])

    def validation_step(self, batch: BagBatch, batch_idx: int) -> None:
        self.evaluate("val", batch)

    def test_step(self, batch: BagBatch, batch_idx: int) -> None:
        self.evaluate("test", batch)

    def end_evaluation(self, stage: str) -> None:
        self.log_metrics(stage, self.metrics[f"{stage}_metrics"])
        localisation = self.localisation[f"{stage}_localisation"]
        # logged when any process saw slides with tumour tiles marked (a collective decision)
        slides = self.trainer.strategy.reduce(localisation.slides.clone(), reduce_op="sum")
        if float(slides) > 0:
            self.log_metrics(stage, localisation)
        else:
            localisation.reset()

    def on_validation_epoch_end(self) -> None:
        self.end_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self.end_evaluation("test")

    # figures
    def draw_examples(self, stage: str, examples: list[SlideResult]) -> dict[str, Figure]:
        """Each branch's attention over the first slides, positives first (up to 4)."""
        if not examples:
            return {}
        positive = self.class_names.index("tumour") if "tumour" in self.class_names else None
        shown = sorted(examples, key=lambda r: -int(r.probs.argmax() == positive))[:4]
        titles = [self.title(r) for r in shown]
        return {"heatmaps": branch_heatmaps([r.bag for r in shown], [r.weights for r in shown],
                                            titles)}  # fmt: skip

    def title(self, result: SlideResult) -> str:
        predicted = self.class_names[int(result.probs.argmax())]
        truth = f", truth {result.bag.label}" if result.bag.label is not None else ""
        return f"{result.bag.slide_id}: {predicted} {result.probs.max():.2f}{truth}"

    # predictions
    def predict_step(self, batch: BagBatch, batch_idx: int) -> list[SlideResult]:
        output = self(batch)
        probs = output.slide_logits.softmax(-1).float().cpu().numpy()
        weights = split_bags(output.weights, batch.cu_seqlens)
        folder = run_folder(self.trainer) / "heatmaps"
        folder.mkdir(parents=True, exist_ok=True)
        results = []
        for bag, p, w in zip(batch.bags, probs, weights, strict=True):
            result = SlideResult(bag, p, w)
            if has_layout(bag):
                figure = branch_heatmaps([bag], [w], [self.title(result)])
                result.heatmap = write_png(figure, folder / f"{bag.slide_id}.png")
            results.append(result)
        return results

    def prediction_header(self) -> str:
        return ",".join(["slide_id", "predicted", *(f"p_{c}" for c in self.class_names),
                         "label", "tiles", "heatmap"])  # fmt: skip

    def format_prediction(self, prediction: SlideResult) -> str:
        p = prediction
        cells = [p.bag.slide_id, self.class_names[int(p.probs.argmax())],
                 *(f"{v:.6f}" for v in p.probs), p.bag.label or "", str(len(p.bag)),
                 str(p.heatmap or "")]  # fmt: skip
        return ",".join(cells)

    # attention inspection
    def render_attention(self, recording: Recording, out_dir: Path) -> list[Path]:
        """Hook of ``core.inspect.AttentionInspector``: each branch's heatmap over the recorded
        slides, and each branch's entropy and top-K mass as trained and under STKIM's mask."""
        kept = recording.weights.get("model.pool") or []
        batches = recording.batches
        pairs = [(bag, w[:, 0, :].T) for item in kept if item.batch_index is not None
                 for bag, w in zip(batches[item.batch_index].bags, item.weights, strict=True)]  # fmt: skip
        if not pairs:
            return []
        written = []
        drawable = [(b, w.numpy()) for b, w in pairs if has_layout(b)][:4]
        if drawable:
            figure = branch_heatmaps([b for b, _ in drawable], [w for _, w in drawable],
                                     [b.slide_id for b, _ in drawable])  # fmt: skip
            written.append(write_png(figure, out_dir / "branch_heatmaps.png"))
        rows = self.stkim_effect([w for _, w in pairs])
        written.append(write_png(stkim_table_figure(rows), out_dir / "stkim_effect.png"))
        path = out_dir / "stkim_effect.csv"
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        written.append(path)
        return written

    def stkim_effect(self, weights: list[torch.Tensor]) -> list[dict[str, float]]:
        """Per branch, the mean over slides of the normalised entropy and top-K mass of the
        attention as trained and with STKIM's mask applied (K = the model's ``top_k``, 10 for
        ABMIL, which has none)."""
        top_k = self.config.top_k or 10
        mask_drop = self.config.mask_drop if self.config.top_k else 0.6
        generator = torch.Generator().manual_seed(0)
        before, after = [], []
        for w in weights:
            masked = masked_by_stkim(w, top_k, mask_drop, generator)
            for out, values in ((before, w), (after, masked)):
                stats = head_statistics(values.T[None, :, None, :], top_k=top_k)
                out.append(torch.stack([stats.normalized_entropy, stats.topk_mass]))
        b, a = torch.stack(before).mean(0), torch.stack(after).mean(0)  # [2, K]
        return [{"branch": k + 1, "entropy_before": float(b[0, k]),
                 "entropy_after": float(a[0, k]), "top_k_mass_before": float(b[1, k]),
                 "top_k_mass_after": float(a[1, k])} for k in range(b.shape[1])]  # fmt: skip

    def evaluation_protocol(self) -> dict[str, Any]:
        return {
            **super().evaluation_protocol(),
            "model": "ABMIL" if self.config.n_branches == 1 and not self.config.top_k else "ACMIL",
            "prediction": "softmax of the slide classifier (branches' mean attention)",
            "metrics": "accuracy; AUROC one class vs rest, macro mean; F1 macro mean (ACMIL's "
            "script uses torchmetrics' micro F1 = accuracy); per class AUROC, F1, recall",
            "stkim": "training only" if self.config.top_k and self.config.mask_drop else "off",
        }
