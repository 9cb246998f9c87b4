"""KITTI AP R40: matching and AP by hand, the metric against a brute-force reference, DDP merging."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from apps.pointcloud.boxes import iou_3d, iou_bev
from apps.pointcloud.frames import CLASSES
from apps.pointcloud.metrics import KittiAP, average_precision_r40, match_frame

THRESHOLDS = (0.7, 0.5, 0.5)


def reference_r40(scores: list[float], tp: list[bool], n_gt: int) -> float:
    """R40 straight from its definition, in exact fractions: precision/recall at each score
    threshold, best precision at recall ≥ i/40, averaged."""
    points = []
    for threshold in set(scores):
        admitted = [t for s, t in zip(scores, tp, strict=True) if s >= threshold]
        hits = sum(admitted)
        points.append((Fraction(hits, n_gt), Fraction(hits, len(admitted))))
    levels = [Fraction(i, 40) for i in range(1, 41)]
    return float(sum(max((p for r, p in points if r >= lv), default=0) for lv in levels) / 40)


def test_r40_of_a_hand_case():
    # 4 GT; detections TP, FP, TP, TP: recall 1/4 at precision 1, up to 3/4 at precision 3/4
    ap = average_precision_r40(
        torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([1, 0, 1, 1]) > 0, 4
    )
    assert ap.item() == pytest.approx((10 * 1.0 + 20 * 0.75) / 40)


def test_r40_matches_definition_on_random_cases(gen):
    for _ in range(30):
        n = int(torch.randint(0, 25, (1,), generator=gen))
        scores = torch.randint(1, 8, (n,), generator=gen) / 8  # ties across TP and FP
        tp = torch.rand(n, generator=gen) < 0.6
        n_gt = int(tp.sum()) + int(torch.randint(0, 4, (1,), generator=gen)) or 1
        expected = reference_r40(scores.tolist(), tp.tolist(), n_gt)
        assert average_precision_r40(scores, tp, n_gt).item() == pytest.approx(expected)


def test_r40_without_ground_truth_is_nan():
    assert math.isnan(average_precision_r40(torch.tensor([0.5]), torch.tensor([False]), 0).item())


def test_match_frame_by_hand():
    iou = torch.tensor([[0.8, 0.1, 0.0], [0.75, 0.2, 0.9], [0.6, 0.9, 0.0], [0.95, 0.8, 0.0]])
    scores = torch.tensor([0.5, 0.9, 0.7, 0.3])
    counted = torch.tensor([True, False, True])
    kept, tp = match_frame(scores, iou, counted, 0.7)
    # 0.9 takes GT 2 (its best), 0.7 takes ignored GT 1 (dropped), 0.5 takes GT 0,
    # 0.3 finds every GT it overlaps taken: a false positive
    assert kept.tolist() == pytest.approx([0.9, 0.5, 0.3])
    assert tp.tolist() == [True, True, False]


def test_match_frame_without_ground_truth_or_detections():
    kept, tp = match_frame(torch.tensor([0.4, 0.6]), torch.zeros(2, 0), torch.zeros(0) > 0, 0.5)
    assert kept.tolist() == pytest.approx([0.6, 0.4]) and tp.tolist() == [False, False]
    kept, tp = match_frame(torch.zeros(0), torch.zeros(0, 3), torch.ones(3) > 0, 0.5)
    assert kept.shape == tp.shape == (0,)


def random_frame(gen: torch.Generator, n_gt: int = 6, n_false: int = 3):
    """Ground truth spread on a 10 m grid (no two overlap), detections: noisy copies of most of
    them (some noisy enough to miss), a few boxes elsewhere; scores on a coarse grid (ties)."""
    cells = torch.randperm(30, generator=gen)[:n_gt]
    gt = torch.zeros(n_gt, 7)
    gt[:, 0], gt[:, 1] = (cells % 6) * 10.0, (cells // 6) * 10.0
    gt[:, 2] = torch.rand(n_gt, generator=gen) - 1.0
    gt[:, 3:6] = 0.6 + 3.0 * torch.rand(n_gt, 3, generator=gen)
    gt[:, 6] = torch.rand(n_gt, generator=gen) * 6.0
    labels = torch.randint(0, 3, (n_gt,), generator=gen)
    difficulty = torch.randint(-1, 3, (n_gt,), generator=gen)
    found = torch.rand(n_gt, generator=gen) < 0.8
    noise = 0.15 * torch.randn(int(found.sum()), 7, generator=gen)
    noise[:, 3:6] = 0.0
    false = torch.zeros(n_false, 7)
    false[:, :2] = 5.0 + 10.0 * torch.randint(0, 6, (n_false, 2), generator=gen)
    false[:, 3:6] = 1.0
    boxes = torch.cat((gt[found] + noise, false))
    pred_labels = torch.cat((labels[found], torch.randint(0, 3, (n_false,), generator=gen)))
    scores = torch.randint(1, 6, (len(boxes),), generator=gen) / 5
    return (boxes, scores, pred_labels), (gt, labels, difficulty)


def reference_metric(preds, targets, level: int) -> dict[str, float]:
    """The metric from its definition, detection by detection in Python lists."""
    results: dict[str, float] = {}
    for kind, iou_fn in (("BEV", iou_bev), ("3D", iou_3d)):
        aps = []
        for c, name in enumerate(CLASSES):
            scores, tps, n_gt = [], [], 0
            for (boxes, det_scores, det_labels), (gt, gt_labels, difficulty) in zip(
                preds, targets, strict=True
            ):
                dets = [i for i in range(len(boxes)) if det_labels[i] == c]
                dets.sort(key=lambda i: -det_scores[i].item())
                truths = [j for j in range(len(gt)) if gt_labels[j] == c]
                counted = {j: 0 <= difficulty[j].item() <= level for j in truths}
                n_gt += sum(counted.values())
                iou = iou_fn(boxes.double(), gt.double())
                free = set(truths)
                for i in dets:
                    best = max(free, key=lambda j: (iou[i, j].item(), -j), default=None)
                    if best is None or iou[i, best] < THRESHOLDS[c]:
                        scores.append(det_scores[i].item())
                        tps.append(False)
                        continue
                    free.remove(best)
                    if counted[best]:
                        scores.append(det_scores[i].item())
                        tps.append(True)
            ap = reference_r40(scores, tps, n_gt) if n_gt else math.nan
            results[f"{name}_{kind}_AP"] = ap
            aps.append(ap)
        present = [ap for ap in aps if not math.isnan(ap)]
        results[f"mAP_{kind}"] = sum(present) / len(present) if present else math.nan
    return results


def as_floats(results: dict[str, torch.Tensor]) -> dict[str, float]:
    assert all(value.ndim == 0 for value in results.values())
    return {key: value.item() for key, value in results.items()}


def assert_same(got: dict[str, float], expected: dict[str, float]) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


@pytest.mark.parametrize("level", [0, 1, 2])
def test_metric_matches_reference(gen, level):
    frames = [random_frame(gen) for _ in range(12)]
    preds, targets = zip(*frames, strict=True)
    metric = KittiAP(difficulty=level)
    metric.update(list(preds), list(targets))
    got = as_floats(metric.compute())
    assert_same(got, reference_metric(preds, targets, level))
    assert all(0.0 < got[f"{name}_BEV_AP"] < 1.0 for name in CLASSES), got


def perfect_frames(gen: torch.Generator, n: int = 4):
    frames = []
    for _ in range(n):
        (_, _, _), (gt, labels, _) = random_frame(gen)
        difficulty = torch.zeros_like(labels)
        scores = torch.rand(len(gt), generator=gen)
        frames.append(((gt.clone(), scores, labels.clone()), (gt, labels, difficulty)))
    return frames


def test_perfect_detections_score_one(gen):
    metric = KittiAP()
    preds, targets = zip(*perfect_frames(gen), strict=True)
    metric.update(list(preds), list(targets))
    assert all(value == pytest.approx(1.0) for value in as_floats(metric.compute()).values())


def test_false_detections_score_zero(gen):
    metric = KittiAP()
    frames = perfect_frames(gen)
    for (boxes, _, _), _ in frames:
        boxes[:, 0] += 5.0
    preds, targets = zip(*frames, strict=True)
    metric.update(list(preds), list(targets))
    assert all(value == 0.0 for value in as_floats(metric.compute()).values())


def test_detections_on_ignored_ground_truth_change_nothing(gen):
    frames = [random_frame(gen) for _ in range(6)]
    ignored = torch.tensor(
        [[100.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.2], [120.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]]
    )
    car = torch.zeros(2, dtype=torch.long)
    with_extra = [
        ((torch.cat((b, ignored)), torch.cat((s, torch.ones(2))), torch.cat((lab, car))),
         (torch.cat((g, ignored)), torch.cat((gl, car)), torch.cat((d, torch.tensor([-1, 2])))))
        for (b, s, lab), (g, gl, d) in frames
    ]  # fmt: skip
    results = []
    for chosen, level in ((frames, 1), (with_extra, 1), (with_extra, 2)):
        metric = KittiAP(difficulty=level)
        preds, targets = zip(*chosen, strict=True)
        metric.update(list(preds), list(targets))
        results.append(as_floats(metric.compute()))
    assert_same(results[1], results[0])
    assert results[2]["Car_BEV_AP"] != pytest.approx(results[0]["Car_BEV_AP"])  # hard counts at 2


@pytest.mark.parametrize(("label", "margin", "expected"), [(0, -0.01, 1.0), (0, 0.01, 0.0),
                                                          (1, -0.01, 1.0), (1, 0.01, 0.0)])  # fmt: skip
def test_iou_just_above_or_below_threshold(label, margin, expected):
    # boxes of the same size shifted by s along their length overlap (dx - s) / (dx + s)
    threshold, dx = THRESHOLDS[label], 2.0
    shift = dx * (1 - threshold) / (1 + threshold) + margin
    gt = torch.tensor([[5.0, 1.0, -0.5, dx, 1.0, 1.5, 0.0]])
    moved = gt + torch.tensor([[shift, 0, 0, 0, 0, 0, 0]])
    labels = torch.tensor([label])
    metric = KittiAP()
    metric.update([(moved, torch.tensor([0.8]), labels)], [(gt, labels, torch.tensor([0]))])
    got = as_floats(metric.compute())
    assert got[f"{CLASSES[label]}_BEV_AP"] == expected
    assert got[f"{CLASSES[label]}_3D_AP"] == expected


def test_separate_updates_equal_one_update(gen):
    frames = [random_frame(gen) for _ in range(8)]
    preds, targets = zip(*frames, strict=True)
    together, apart = KittiAP(), KittiAP()
    together.update(list(preds), list(targets))
    for pred, target in frames:
        apart.update([pred], [target])
    assert_same(as_floats(apart.compute()), as_floats(together.compute()))


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric KittiAP was called before")
@pytest.mark.parametrize("swap", [False, True])
def test_merged_states_equal_one_process(gen, swap):
    frames = [random_frame(gen) for _ in range(10)]
    preds, targets = zip(*frames, strict=True)
    single = KittiAP()
    single.update(list(preds), list(targets))
    first, second = KittiAP(), KittiAP()
    first.update(list(preds[::2]), list(targets[::2]))
    second.update(list(preds[1::2]), list(targets[1::2]))
    if swap:
        first, second = second, first
    merged = KittiAP()  # list states concatenate, counts add: what a DDP sync does
    merged.merge_state(first)
    merged.merge_state(second)
    assert_same(as_floats(merged.compute()), as_floats(single.compute()))


def test_bad_arguments():
    with pytest.raises(ValueError, match="thresholds"):
        KittiAP(iou_thresholds=(0.7, 0.5))
    with pytest.raises(ValueError, match="difficulty"):
        KittiAP(difficulty=3)
    with pytest.raises(ValueError, match="frames"):
        KittiAP().update([], [(torch.zeros(0, 7), torch.zeros(0), torch.zeros(0))])
