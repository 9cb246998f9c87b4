"""Attention inspection for every app: record per-head statistics or weights of the core modules,
redistribute attention away from sink keys, and a Lightning callback that writes both to a run's logs.

``with record(model) as recording: model(x)`` then ``recording.statistics()``; see ``docs/core.md``
("Inspecting attention").
"""

from core.inspect.callback import AttentionInspector
from core.inspect.figures import heads_figure
from core.inspect.kept import AttentionBatch, WeightLimitError, WeightLimits
from core.inspect.recorder import Recording, paused, record
from core.inspect.redistribute import Redistribution, redistribute
from core.inspect.stats import (
    HeadStatistics,
    head_statistics,
    sink_fraction,
    top_k_mass,
    write_statistics_csv,
)

__all__ = [
    "AttentionBatch",
    "AttentionInspector",
    "HeadStatistics",
    "Recording",
    "Redistribution",
    "WeightLimitError",
    "WeightLimits",
    "head_statistics",
    "heads_figure",
    "paused",
    "record",
    "redistribute",
    "sink_fraction",
    "top_k_mass",
    "write_statistics_csv",
]
