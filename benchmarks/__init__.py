"""Benchmarks: each module prints markdown tables of ratios measured side by side in one run.

Run one as ``python -m benchmarks.<name>`` from the repository root (``nox -s bench`` runs them all).
"""
