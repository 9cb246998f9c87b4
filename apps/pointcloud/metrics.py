"""KITTI-style average precision of 3D detections, bird's-eye view and 3D, at 40 recall points.

The protocol follows KITTI's in its essentials: one IoU threshold per class (Car 0.7, Pedestrian and
Cyclist 0.5); ground truths of the evaluated difficulty level or an easier one count, harder ones and
those the benchmark ignores (difficulty −1) are ignored, and a detection matched to an ignored box is
neither a true nor a false positive; AP is the mean interpolated precision at the recall points
1/40, 2/40, …, 1 (R40, Simonelli et al., ICCV 2019). Matching is greedy by descending score, each
detection taking the free ground truth it overlaps most. Unlike KITTI's devkit there is no minimum
image height and no DontCare region: LiDAR frames here carry no image boxes.

To stay exact under DDP the metric stores per-detection outcomes (score, TP flag, class, kind) and
per-class ground-truth counts, which concatenate and add up across processes; AP treats tied scores
as one threshold, so it does not depend on the order the outcomes arrive in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from apps.pointcloud.boxes import iou_3d, iou_bev
from apps.pointcloud.frames import CLASSES

RECALL_POINTS = 40
"""KITTI's R40: precision is read at recall 1/40, 2/40, …, 1."""

KINDS: tuple[tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]], ...] = (
    ("BEV", iou_bev),
    ("3D", iou_3d),
)
"""The two overlaps evaluated, by name, in the order of the ``kinds`` state's ids."""

Prediction = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""One frame's detections: boxes ``[k, 7]``, scores ``[k]``, labels int64 ``[k]``."""

Target = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""One frame's ground truth: boxes ``[m, 7]``, labels int64 ``[m]``, difficulty int64 ``[m]``."""


def match_frame(
    scores: torch.Tensor, iou: torch.Tensor, gt_counted: torch.Tensor, iou_threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Match one frame's detections of one class to its ground truths, KITTI's way.

    By descending ``scores [k]``, each detection takes the still-free ground truth with the highest
    ``iou [k, m]`` at or above ``iou_threshold``: a counted one (``gt_counted`` bool ``[m]``) makes
    it a true positive, an ignored one drops it; finding none makes it a false positive.
    Returns the kept detections' scores ``[k']`` and TP flags bool ``[k']``, by descending score.
    """
    order = scores.argsort(descending=True, stable=True)
    overlaps, counted = iou[order].cpu(), gt_counted.cpu()
    free = torch.ones(iou.shape[1], dtype=torch.bool)
    outcome = torch.zeros(len(order), dtype=torch.int8)  # 1 TP, 0 FP, -1 dropped
    for rank in range(len(order) if free.any() else 0):
        candidates = overlaps[rank].masked_fill(~free, -1.0)
        best = int(candidates.argmax())
        if candidates[best] >= iou_threshold:
            free[best] = False
            outcome[rank] = 1 if counted[best] else -1
    kept = outcome >= 0
    return scores[order][kept.to(scores.device)], (outcome[kept] == 1).to(scores.device)


def average_precision_r40(scores: torch.Tensor, tp: torch.Tensor, n_gt: int) -> torch.Tensor:
    """AP R40 (float64, 0-d) of detections ``scores [n]`` with TP flags ``tp [n]`` against
    ``n_gt`` counted ground truths; nan without ground truth.

    Precision and recall are taken at each distinct score threshold (tied scores enter together);
    the interpolated precision at recall r is the best precision at any recall ≥ r, 0 if r is never
    reached, and AP is its mean over r = 1/40, …, 1.
    """
    if n_gt <= 0:
        return torch.tensor(float("nan"), dtype=torch.float64, device=scores.device)
    ranked_scores, order = scores.double().sort(descending=True)
    true_positives = tp[order].long().cumsum(0)
    detections = torch.arange(1, len(order) + 1, device=scores.device)
    last_of_tie = torch.ones_like(ranked_scores, dtype=torch.bool)
    last_of_tie[:-1] = ranked_scores[1:] != ranked_scores[:-1]
    true_positives, detections = true_positives[last_of_tie], detections[last_of_tie]
    precision = true_positives.double() / detections
    best_from_here = precision.flip(0).cummax(0).values.flip(0)
    best_from_here = torch.cat((best_from_here, precision.new_zeros(1)))
    # first threshold whose recall tp / n_gt reaches i / 40, compared exactly in integers
    levels = torch.arange(1, RECALL_POINTS + 1, device=scores.device) * n_gt
    first_reaching = torch.searchsorted(RECALL_POINTS * true_positives, levels)
    return best_from_here[first_reaching].mean()


def _concatenated(
    state: list[torch.Tensor] | torch.Tensor, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """A list state as one 1-D tensor (also when empty, or already joined by a DDP sync)."""
    if isinstance(state, list) and not state:
        return torch.zeros(0, dtype=dtype, device=device)
    return dim_zero_cat(state)


class KittiAP(Metric):
    """KITTI AP R40 per class in BEV and 3D, and their means over classes that have ground truth.

    ``update`` takes one list entry per frame; ``compute`` returns ``"<Class>_BEV_AP"``,
    ``"<Class>_3D_AP"`` for each class, ``"mAP_BEV"`` and ``"mAP_3D"``, 0-d float32 tensors in
    [0, 1] (nan for a class without counted ground truth, left out of the means).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(
        self,
        classes: Sequence[str] = CLASSES,
        iou_thresholds: Sequence[float] = (0.7, 0.5, 0.5),
        difficulty: int = 1,
    ) -> None:
        super().__init__()
        if len(iou_thresholds) != len(classes):
            raise ValueError(f"{len(iou_thresholds)} IoU thresholds for {len(classes)} classes")
        if difficulty not in (0, 1, 2):
            raise ValueError(
                f"difficulty must be 0 (easy), 1 (moderate) or 2 (hard), got {difficulty}"
            )
        self.classes = tuple(classes)
        self.iou_thresholds = tuple(float(t) for t in iou_thresholds)
        self.difficulty = difficulty
        for name in ("scores", "true_positive", "class_ids", "kinds"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("n_gt", torch.zeros(len(classes), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Sequence[Prediction], targets: Sequence[Target]) -> None:
        """Match ``preds`` to ``targets``, one entry per frame, and store the outcomes."""
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} predicted frames for {len(targets)} target frames")
        outcomes = [part for p, t in zip(preds, targets, strict=True) for part in self._match(p, t)]
        if outcomes:
            scores, true_positive, class_ids, kinds = (
                torch.cat(x) for x in zip(*outcomes, strict=True)
            )
            self.scores.append(scores)
            self.true_positive.append(true_positive)
            self.class_ids.append(class_ids)
            self.kinds.append(kinds)
        for _, labels, difficulty in targets:
            counted = labels[(difficulty >= 0) & (difficulty <= self.difficulty)]
            self.n_gt += torch.bincount(counted, minlength=len(self.classes)).to(self.n_gt)

    def _match(self, pred: Prediction, target: Target) -> list[tuple[torch.Tensor, ...]]:
        """One frame's outcomes per class and kind: (scores, TP flags, class ids, kind ids)."""
        boxes, scores, labels = pred
        gt_boxes, gt_labels, difficulty = target
        counted = (difficulty >= 0) & (difficulty <= self.difficulty)
        outcomes = []
        for class_id, threshold in enumerate(self.iou_thresholds):
            mine, theirs = labels == class_id, gt_labels == class_id
            for kind_id, (_, iou) in enumerate(KINDS):
                overlaps = iou(boxes[mine].double(), gt_boxes[theirs].double())
                kept, tp = match_frame(scores[mine], overlaps, counted[theirs], threshold)
                ids = torch.full_like(tp, class_id, dtype=torch.long)
                outcomes.append((kept, tp, ids, torch.full_like(ids, kind_id)))
        return outcomes

    def compute(self) -> dict[str, torch.Tensor]:
        device = self.n_gt.device
        scores = _concatenated(self.scores, torch.float32, device)
        true_positive = _concatenated(self.true_positive, torch.bool, device)
        class_ids = _concatenated(self.class_ids, torch.long, device)
        kinds = _concatenated(self.kinds, torch.long, device)
        results: dict[str, torch.Tensor] = {}
        means: dict[str, torch.Tensor] = {}
        for kind_id, (kind, _) in enumerate(KINDS):
            per_class = []
            for class_id, name in enumerate(self.classes):
                chosen = (class_ids == class_id) & (kinds == kind_id)
                ap = average_precision_r40(
                    scores[chosen], true_positive[chosen], int(self.n_gt[class_id])
                )
                results[f"{name}_{kind}_AP"] = ap.float()
                per_class.append(ap)
            means[f"mAP_{kind}"] = torch.stack(per_class).nanmean().float()
        return {**results, **means}
