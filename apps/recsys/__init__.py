"""Sequential recommendation with MQSA-TED (Zhu et al. 2024) and its SASRec baseline (Kang &
McAuley 2018)."""

from apps.recsys.data import RecsysDataModule
from apps.recsys.model import MQSA, RecsysConfig
from apps.recsys.task import RecsysTask

__all__ = ["MQSA", "RecsysConfig", "RecsysDataModule", "RecsysTask"]
