"""How ``nox -s demo`` presents the pointcloud app: the task and KITTI-style AP on the synthetic
scenes, for DSVT and, as a second run on the same data, ScatterFormer (read by
:mod:`core.train.demo`)."""

from __future__ import annotations

from dataclasses import replace

from core.train.report import DemoCard, MetricRow

DSVT_CARD = DemoCard(
    title="DSVT: 3-D cars, pedestrians and cyclists in LiDAR sweeps",
    task=(
        "**Task.** Find every car, pedestrian and cyclist in a LiDAR sweep as an oriented 3-D box. "
        "**Data.** The built-in scene simulator: a 32-beam spinning sensor ray-cast against "
        "KITTI-sized objects among unlabelled walls, poles and bushes, with occlusion and range "
        "noise, written in the KITTI layout (labels in the camera's view); 400 train / 100 "
        "val frames. **Model.** DSVT (Wang et al. 2023): points → pillars → attention inside "
        "evenly filled sets of 36 voxels per window, cut along y then x (rotated sets) and over "
        "shifted windows, then a bird's-eye-view CNN and a CenterPoint head (a heatmap of object "
        "centres per class, box size, height and heading). Tutorial: `docs/pointcloud.md`."
    ),
    paper_source=(
        "DSVT reports Waymo and nuScenes, not these synthetic scenes or KITTI, so there is no "
        "paper column"
    ),
    metrics=(
        MetricRow("test/Car_BEV_AP", "Car BEV AP", "R40, IoU 0.7, moderate", fmt="{:.3f}"),
        MetricRow("test/Car_3D_AP", "Car 3-D AP", "R40, IoU 0.7, moderate", fmt="{:.3f}"),
        MetricRow(
            "test/Pedestrian_BEV_AP", "Pedestrian BEV AP", "R40, IoU 0.5, moderate", fmt="{:.3f}"
        ),
        MetricRow("test/Cyclist_BEV_AP", "Cyclist BEV AP", "R40, IoU 0.5, moderate", fmt="{:.3f}"),
        MetricRow("test/mAP_BEV", "BEV mAP", "mean over the three classes", fmt="{:.3f}"),
    ),
    figures={
        "bev": "Bird's-eye view of test frames: points by height, true boxes solid and detections "
        "dashed with their scores, coloured by class.",
    },
    full_run_overlays=("configs/pointcloud/kitti.yaml",),
    full_run_note=(
        "KITTI 3-D object (3,712 training / 3,769 validation frames); put it under "
        "`data/pointcloud/kitti/` first (see `docs/pointcloud.md`)."
    ),
)

SCATTERFORMER_CARD = replace(
    DSVT_CARD,
    title="ScatterFormer: the same detector with scattered linear attention",
    task=(
        "**Task and data** as for DSVT above. **Model.** ScatterFormer (He et al. 2024): the "
        "voxels of all windows form one sorted sequence; each window is attended by linear "
        "attention (per-window sums of φ(k)ᵀv, no padding), windows exchange information through "
        "depthwise sparse convolutions instead of shifting, and attention-style pooling over "
        "height gives the same bird's-eye-view CNN and CenterPoint head as DSVT's. Tutorial: "
        "`docs/pointcloud.md#scatterformer`."
    ),
    paper_source=(
        "ScatterFormer reports Waymo and nuScenes, not these synthetic scenes or KITTI, so there "
        "is no paper column"
    ),
    overlays=("configs/pointcloud/scatterformer.yaml",),
    full_run_overlays=("configs/pointcloud/scatterformer.yaml", "configs/pointcloud/kitti.yaml"),
    variant="scatterformer",
)

CARD = replace(DSVT_CARD, variants=(SCATTERFORMER_CARD,))
