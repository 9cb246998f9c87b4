"""Symbolic music generation with the Music Transformer (Huang et al. 2019): relative self-attention
over JSB chorale grids or performance events, with its vanilla-Transformer baseline."""

from apps.music.data import MusicDataModule
from apps.music.model import MusicConfig, MusicTransformer
from apps.music.task import MusicTask

__all__ = ["MusicConfig", "MusicDataModule", "MusicTask", "MusicTransformer"]
