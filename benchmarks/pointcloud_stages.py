"""Where a DSVT detector's time goes, stage by stage: voxelise, pillar net, set partition, the rest
of the backbone (attention), BEV scatter + CNN, head, decoding (peaks + rotated NMS).

Why: DSVT's users cannot reproduce its speed claims without a breakdown; this one reads the profiler
labels the detector puts around each stage (``pointcloud/<stage>``), on the model of
``configs/pointcloud/default.yaml`` and batches of 4 simulated frames in the camera's view (what
training sees), forward only (eval mode, ``no_grad``), and the forward + backward of a training step
as a whole. Median over ``ROUNDS`` batches after one warm-up.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from apps.pointcloud.__main__ import main as cli
from apps.pointcloud.head import build_targets, center_loss
from apps.pointcloud.readers import in_image
from apps.pointcloud.simulate import kitti_calib, simulate_frame
from benchmarks._harness import THREADS, markdown_table, watch_load

FRAMES, ROUNDS = 4, 5
STAGES = ("voxelize", "pfn", "backbone", "partition", "bev", "head", "decode")


def batches(count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` batches of FRAMES simulated frames: packed points ``[N, 4]`` and frame index."""
    out = []
    for b in range(count):
        clouds = []
        for f in range(FRAMES):
            scene = simulate_frame(np.random.default_rng([99, b * FRAMES + f]))
            points = torch.from_numpy(scene.points)
            clouds.append(points[in_image(points, kitti_calib())])
        sizes = torch.tensor([len(c) for c in clouds])
        out.append((torch.cat(clouds), torch.arange(FRAMES).repeat_interleave(sizes)))
    return out


def main() -> None:
    torch.set_num_threads(THREADS)
    task = cli(["-c", "configs/pointcloud/default.yaml"], run=False).model
    model = task.model
    data = batches(ROUNDS + 1)
    stage_ms: dict[str, list[float]] = {s: [] for s in STAGES}
    forward_ms, train_ms = [], []
    no_boxes = [torch.zeros(0, 7)] * FRAMES, [torch.zeros(0, dtype=torch.long)] * FRAMES
    with watch_load() as load:
        for round_, (points, index) in enumerate(data):
            model.eval()
            with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
                start = time.perf_counter()
                model.detect(model(points, index, FRAMES))
                elapsed = time.perf_counter() - start
            model.train()
            start = time.perf_counter()
            maps = model(points, index, FRAMES)
            targets = build_targets(*no_boxes, model.grid, model.stride, maps["heatmap"].shape[-2:])
            center_loss(maps, targets)["loss"].backward()
            model.zero_grad()
            if round_ == 0:
                continue  # warm-up
            train_ms.append((time.perf_counter() - start) * 1e3)
            forward_ms.append(elapsed * 1e3)
            totals = {e.key: e.cpu_time_total / 1e3 for e in prof.key_averages()}
            for stage in STAGES:
                stage_ms[stage].append(totals.get(f"pointcloud/{stage}", 0.0))
    median = {s: statistics.median(v) for s, v in stage_ms.items()}
    forward = statistics.median(forward_ms)
    rows = [[s, median[s], 100 * median[s] / forward] for s in STAGES]
    rows.insert(4, ["backbone without partition", median["backbone"] - median["partition"],
                    100 * (median["backbone"] - median["partition"]) / forward])  # fmt: skip
    print(
        f"\n### DSVT detector, CPU ({THREADS} threads): configs/pointcloud/default.yaml, batches of "
        f"{FRAMES} simulated frames ({points.shape[0]} points in view in the last); median of "
        f"{ROUNDS} batches. `partition` is part of `backbone`.\n"
    )
    print(markdown_table(["stage (forward)", "ms", "% of forward"], rows))
    print(
        f"\nforward + decoding: {forward:.0f} ms a batch; a training step's forward + backward: "
        f"{statistics.median(train_ms):.0f} ms (no boxes: the targets' cost left out)"
    )
    print("\n" + load[0].report())


if __name__ == "__main__":
    main()
