"""Pointer Networks (Vinyals et al. 2015): convex hull, Delaunay triangulation and planar TSP."""

from apps.pointer.data import PointerDataModule
from apps.pointer.model import PointerNetwork
from apps.pointer.task import PointerTask

__all__ = ["PointerDataModule", "PointerNetwork", "PointerTask"]
