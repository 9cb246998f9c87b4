"""Whole-slide-image classification with ACMIL (Zhang et al. 2024) and its ABMIL baseline (Ilse et al.
2018)."""
