"""Datasets, augmentation, the typed batch and the LightningDataModule of the pointcloud app.

Every source is read in the KITTI layout (``<root>/training/{velodyne,label_2,calib}`` and
``<root>/ImageSets/<split>.txt``): the built-in synthetic scenes are generated in it under
``--data.root`` (:mod:`apps.pointcloud.simulate`), and real KITTI is read by naming its split files
(``--data.train_file data/pointcloud/kitti/ImageSets/train.txt``; the layout's root is two folders
up). The KITTI convention evaluates on ``val`` (its ``testing`` labels are withheld), so the test split
defaults to the validation list. ``predict`` runs on the test frames, or on a user's own cloud
(``--data.predict_file``: KITTI ``.bin``, nuScenes ``.pcd.bin``, Waymo ``.npy``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from apps.pointcloud.boxes import boxes_in_range
from apps.pointcloud.frames import Frame, VoxelGrid
from apps.pointcloud.readers import (
    Calib,
    in_image,
    read_calib,
    read_image_set,
    read_kitti_frame,
    read_points,
    wrap_angle,
)
from apps.pointcloud.simulate import kitti_calib, simulate_kitti
from core.train import AppDataModule, InputError
from core.train.errors import input_file

log = logging.getLogger(__name__)
IN_RANGE_WARNING = 0.5  # warn when less than this share of a cloud's points is inside point_range


@dataclass  # not frozen: Lightning's batch transfer rebuilds the dataclasses it meets
class PointCloudBatch:
    """B frames, their points packed: ``points`` [N, 4] (x, y, z, intensity) with ``batch_index`` [N]
    (the frame of each point); per frame ``boxes`` [M, 7], ``labels`` [M] and ``difficulty`` [M]
    (−1: ignored by the benchmark), its id and its camera calibration (for KITTI-format output)."""

    points: torch.Tensor
    batch_index: torch.Tensor
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    difficulty: list[torch.Tensor]
    frame_ids: list[str]
    calibs: list[Calib]

    def __len__(self) -> int:
        return len(self.frame_ids)


@dataclass(frozen=True)
class Augmentation:
    """Global augmentation of a training frame (as SECOND/PointPillars/DSVT): a rotation about z by
    a uniform angle in ±``rotation`` (radians), a uniform scaling in [``scale_min``, ``scale_max``],
    and a mirror across the x axis (y → −y) with probability ``flip``."""

    rotation: float = math.pi / 4
    scale_min: float = 0.95
    scale_max: float = 1.05
    flip: float = 0.5

    def __call__(self, frame: Frame) -> Frame:
        """Draws from torch's global generator (seeded by ``seed_everything``, and per worker by
        Lightning)."""
        u = torch.rand(3, dtype=torch.float64).tolist()
        points, boxes = frame.points.clone(), frame.boxes.clone()
        if u[0] < self.flip:
            points[:, 1], boxes[:, 1], boxes[:, 6] = -points[:, 1], -boxes[:, 1], -boxes[:, 6]
        angle = (2 * u[1] - 1) * self.rotation
        c, s = math.cos(angle), math.sin(angle)
        rotation = torch.tensor([[c, -s], [s, c]], dtype=points.dtype)
        points[:, :2] = points[:, :2] @ rotation.T
        boxes[:, :2] = boxes[:, :2] @ rotation.T
        boxes[:, 6] = wrap_angle(boxes[:, 6] + angle)
        scale = self.scale_min + u[2] * (self.scale_max - self.scale_min)
        points[:, :3] *= scale
        boxes[:, :6] *= scale
        return Frame(frame.frame_id, points, boxes, frame.labels, frame.difficulty)


class KittiFrames(Dataset):
    """The frames ``ids`` of a KITTI-layout folder, read on access, keeping the points the camera
    sees (KITTI labels nothing outside its view, so the rest would teach false negatives; OpenPCDet's
    ``FOV_POINTS_ONLY``). Training frames are augmented
    and keep only boxes whose centre lies in ``grid``'s x/y range;
    evaluation frames keep every box, those outside the range marked ignored (difficulty −1: no
    detector with this range can find them)."""

    def __init__(
        self,
        root: Path,
        ids: list[str],
        grid: VoxelGrid,
        augmentation: Augmentation | None = None,
    ) -> None:
        self.root, self.ids, self.grid, self.augmentation = root, ids, grid, augmentation

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[Frame, Calib]:
        calib = read_calib(self.root / "training" / "calib" / f"{self.ids[index]}.txt")
        frame = read_kitti_frame(self.root, self.ids[index], calib)
        frame.points = frame.points[in_image(frame.points, calib)]
        inside = boxes_in_range(frame.boxes, self.grid.point_range)
        if self.augmentation is None:
            difficulty = torch.where(inside, frame.difficulty, -1)
            return Frame(frame.frame_id, frame.points, frame.boxes, frame.labels, difficulty), calib
        frame = self.augmentation(frame)
        inside = boxes_in_range(frame.boxes, self.grid.point_range)
        kept = Frame(
            frame.frame_id,
            frame.points,
            frame.boxes[inside],
            frame.labels[inside],
            frame.difficulty[inside],
        )
        return kept, calib


class PointCloudFiles(Dataset):
    """A user's own point clouds (``predict``): one file, or every cloud in a folder; no boxes.
    ``calib`` places the KITTI-format output in a camera frame (KITTI's usual camera without
    one)."""

    SUFFIXES = (".bin", ".npy")

    def __init__(self, path: Path, grid: VoxelGrid, calib: Calib | None = None) -> None:
        is_cloud = path.is_file() or path.suffix in self.SUFFIXES
        self.paths = (
            [path] if is_cloud else sorted(p for p in path.iterdir() if p.suffix in self.SUFFIXES)
        )
        if not self.paths:
            raise InputError(f"{path}: no .bin, .pcd.bin or .npy point clouds in this folder")
        self.grid, self.calib = grid, calib or kitti_calib()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Frame, Calib]:
        path = self.paths[index]
        points = read_points(path)
        check_frame(path, points, self.grid)
        empty = torch.zeros(0, dtype=torch.long)
        return Frame(path.name, points, torch.zeros(0, 7), empty, empty), self.calib


def check_frame(path: Path, points: torch.Tensor, grid: VoxelGrid) -> None:
    """Warn when a user's cloud does not look like the training frame: few points inside
    ``point_range`` (a wrong range or axis order silently gives no boxes), or a ground height far
    from the range's z extent (a cloud centred on the ground instead of the sensor)."""
    if len(points) == 0:
        log.warning("%s: the point cloud is empty", path)
        return
    lower, upper = torch.tensor(grid.point_range[:3]), torch.tensor(grid.point_range[3:])
    inside = ((points[:, :3] >= lower) & (points[:, :3] < upper)).all(dim=1).float().mean()
    if inside < IN_RANGE_WARNING:
        log.warning(
            "%s: only %.0f%% of the points lie inside point_range %s; check the coordinate frame "
            "(x forward, y left, z up, metres, origin at the sensor) and --data.point_range",
            path,
            100 * float(inside),
            grid.point_range,
        )
    ground = float(points[:, 2].quantile(0.05))
    if not lower[2] <= ground < upper[2]:
        log.warning(
            "%s: the ground (5th percentile of z) is at %.2f m, outside the range's z extent "
            "[%.2f, %.2f); the model expects z measured from the sensor",
            path,
            ground,
            float(lower[2]),
            float(upper[2]),
        )


class PointCloudDataModule(AppDataModule):
    """LiDAR frames in the KITTI layout for 3-D detection.

    Args:
        train_file, val_file, test_file: KITTI ``ImageSets/<split>.txt`` lists of a real KITTI-layout
            folder (``<root>/ImageSets/train.txt``; the frames are read from ``<root>/training``).
            None: the built-in synthetic scenes under ``--data.root``. ``test_file`` defaults to
            ``val_file`` (KITTI's convention).
        simulated_frames: sizes of the synthetic train and val splits.
        point_range: (x_min, y_min, z_min, x_max, y_max, z_max) in metres, LiDAR frame.
        voxel_size: (vx, vy, vz); vz = the range's height makes pillars.
        augment: global rotation, scaling and flip of training frames.
        global_batch: the batch the config's schedule was set for (frames per optimiser step over
            all processes); a warning says so when devices × batch_size differs.
        predict_file: a point cloud (``.bin``, ``.pcd.bin``, ``.npy``) or a folder of them.
        predict_calib_file: a KITTI calib file for ``predict_file``'s KITTI-format boxes.
    """

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        simulated_frames: tuple[int, int] = (400, 100),
        point_range: tuple[float, float, float, float, float, float] = VoxelGrid.point_range,
        voxel_size: tuple[float, float, float] = VoxelGrid.voxel_size,
        augment: bool = True,
        global_batch: int | None = None,
        predict_file: str | None = None,
        predict_calib_file: str | None = None,
        root: str = "data/pointcloud/simulated",
        batch_size: int = 4,
        eval_batch_size: int = 4,
        num_workers: int = 0,
        seed: int = 1234,
    ) -> None:
        super().__init__(root, batch_size, eval_batch_size, num_workers, seed)
        self.grid = VoxelGrid(tuple(point_range), tuple(voxel_size))
        self.split_files = {"train": train_file, "val": val_file, "test": test_file or val_file}
        if (train_file is None) != (val_file is None):
            raise InputError("give both --data.train_file and --data.val_file (KITTI) or neither")
        self.simulated_frames = tuple(simulated_frames)
        self.augmentation = Augmentation() if augment else None
        self.global_batch = global_batch
        self.predict_file, self.predict_calib_file = predict_file, predict_calib_file

    def split(self, split: str) -> tuple[Path, list[str]]:
        """The KITTI-layout folder and frame ids of ``split`` (generating the synthetic scenes on
        first use)."""
        name = self.split_files[split]
        if name is None:
            train, val = self.simulated_frames
            simulate_kitti(self.root, {"train": train, "val": val}, seed=self.seed, progress=True)
            return self.root, read_image_set(self.root, "val" if split == "test" else split)
        path = input_file(self.data_path(name), f"a KITTI ImageSets/{split}.txt frame list")
        self.record_file(split, path)
        return path.parent.parent, read_image_set(path.parent.parent, path.stem)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.warn_on_batch_size(self.trainer.world_size if self.trainer else 1)
            root, ids = self.split("train")
            self.datasets["train"] = KittiFrames(root, ids, self.grid, self.augmentation)
        if stage in ("fit", "validate"):
            self.datasets["val"] = KittiFrames(*self.split("val"), self.grid)
        if stage == "test":
            self.datasets["test"] = KittiFrames(*self.split("test"), self.grid)
        if stage == "predict":
            if self.predict_file is None:
                self.datasets["predict"] = KittiFrames(*self.split("test"), self.grid)
            else:
                path = self.data_path(self.predict_file)
                if not path.exists():
                    raise InputError(f"{path}: no such file or folder (expected a point cloud)")
                calib = None
                if self.predict_calib_file is not None:
                    calib_path = input_file(self.data_path(self.predict_calib_file), "KITTI calib")
                    calib = read_calib(calib_path)
                self.datasets["predict"] = PointCloudFiles(path, self.grid, calib)

    def warn_on_batch_size(self, world_size: int) -> None:
        """Say when the frames per optimiser step differ from the batch the config was set for."""
        if self.global_batch is not None and world_size * self.batch_size != self.global_batch:
            log.warning(
                "global batch %d × %d = %d frames differs from the config's %d: scale the learning "
                "rate or --data.batch_size",
                world_size,
                self.batch_size,
                world_size * self.batch_size,
                self.global_batch,
            )

    def collate(self, items: list[tuple[Frame, Calib]]) -> PointCloudBatch:
        frames = [frame for frame, _ in items]
        sizes = torch.tensor([len(f.points) for f in frames])
        return PointCloudBatch(
            points=torch.cat([f.points for f in frames]),
            batch_index=torch.arange(len(frames)).repeat_interleave(sizes),
            boxes=[f.boxes for f in frames],
            labels=[f.labels for f in frames],
            difficulty=[f.difficulty for f in frames],
            frame_ids=[f.frame_id for f in frames],
            calibs=[calib for _, calib in items],
        )
