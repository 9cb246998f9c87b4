"""Traffic forecasting with STTN, the spatial-temporal transformer network (Xu et al. 2020)."""

from apps.traffic.data import TrafficDataModule
from apps.traffic.model import STTN, STTNConfig
from apps.traffic.task import TrafficTask

__all__ = ["STTN", "STTNConfig", "TrafficDataModule", "TrafficTask"]
