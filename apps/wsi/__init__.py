"""Whole-slide-image classification with ACMIL (Zhang et al. 2024) and its ABMIL baseline (Ilse et al.
2018)."""

from apps.wsi.data import WSIDataModule
from apps.wsi.model import ACMIL, ACMILConfig
from apps.wsi.task import WSITask

__all__ = ["ACMIL", "ACMILConfig", "WSIDataModule", "WSITask"]
