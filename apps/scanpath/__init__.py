"""Gaze scanpath prediction in visual search with OAT, the object-level attention transformer (Fang et
al., ECCV 2024)."""

from apps.scanpath.data import ScanpathDataModule
from apps.scanpath.model import OAT, OATConfig
from apps.scanpath.task import ScanpathTask

__all__ = ["OAT", "OATConfig", "ScanpathDataModule", "ScanpathTask"]
