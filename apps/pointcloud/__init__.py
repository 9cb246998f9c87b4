"""LiDAR 3-D object detection with DSVT, the dynamic sparse voxel transformer with rotated sets (Wang et
al., CVPR 2023), in a CenterPoint-style single-stage detector."""

from apps.pointcloud.data import PointCloudDataModule
from apps.pointcloud.model import Detector, DetectorConfig
from apps.pointcloud.task import PointCloudTask

__all__ = ["Detector", "DetectorConfig", "PointCloudDataModule", "PointCloudTask"]
