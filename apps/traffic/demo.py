"""How ``nox -s demo`` presents the traffic app: the task, the metrics and the historical-average
baseline, computed by the same ``test`` on the same windows (read by :mod:`core.train.demo`)."""

from __future__ import annotations

from core.train.cli import ManyheadsCLI
from core.train.report import Baseline, DemoCard, MetricRow


def historical_average_metrics(cli: ManyheadsCLI) -> dict[str, float]:
    """The ``test/HA/*`` metrics the test logged beside STTN's, under STTN's keys."""
    return {
        "test/" + name.removeprefix("test/HA/"): float(value)
        for name, value in cli.trainer.callback_metrics.items()
        if name.startswith("test/HA/")
    }


def metric(key: str, label: str, meaning: str) -> MetricRow:
    return MetricRow(key, label, meaning + "; lower is better", fmt="{:.2f}")


CARD = DemoCard(
    title="STTN: traffic speed forecasting on a road network",
    task=(
        "**Task.** From the last hour of speed readings at every sensor of a road network (12 "
        "five-minute steps), forecast the next hour (12 steps) at every sensor. **Data.** The "
        "built-in simulator: 64 loop detectors on a directed network of highway corridors, four "
        "weeks of 5-minute speeds with weekday rush hours, incidents, congestion that travels "
        "upstream and 5 % missing readings (zeros, left out of every metric); written as METR-LA "
        "files and read back by the METR-LA reader; split 7:1:2 in time. **Model.** STTN (Xu et al. "
        "2020): a spatial transformer (attention between sensors, gated with a Chebyshev graph "
        "convolution on the road graph) then a temporal transformer (attention between time "
        "steps), trained on masked MAE with Adam. Tutorial: `docs/traffic.md`."
    ),
    paper_source=(
        "Xu et al. 2020 report PeMS-Bay and PeMSD7(M), not this simulator, so there is no paper "
        "column; the baseline is computed on the same test windows"
    ),
    metrics=(
        metric(
            "test/MAE@15min", "MAE 15 min", "mean absolute error of the speed 3 steps ahead, mph"
        ),
        metric("test/MAE@60min", "MAE 60 min", "the same 12 steps (one hour) ahead, mph"),
        metric("test/RMSE@60min", "RMSE 60 min", "root mean squared error one hour ahead, mph"),
        metric(
            "test/MAPE@60min", "MAPE 60 min", "mean absolute percentage error one hour ahead, %"
        ),
    ),
    baseline=Baseline(
        "*historical average*, computed by the same test on the same windows: the mean speed of "
        "the training weeks at the same sensor and the same 5-minute slot of the week (the test "
        "also logs *last value*, the latest reading held for the whole hour, as `test/last_value/*`)",
        historical_average_metrics,
    ),
    figures={
        "forecast": "Four sensors over the first test day: the observed speed (black) and the "
        "forecasts made 15, 30 and 60 minutes ahead, each drawn at the time it forecasts.",
        "spatial_attention": "Spatial attention at the last history step of the first test "
        "window: on the sensor map, each sensor's arrow points to the sensor it listens to most; "
        "the colour is the attention a sensor receives. Right: the full sensor × sensor weights.",
        "temporal_attention": "Temporal attention of the first test window, averaged over "
        "sensors: which of the 12 history steps (columns) each step (rows) attends to.",
    },
    full_run_overlays=("configs/traffic/los.yaml",),
    full_run_note=(
        "The real Los Angeles detectors (207 sensors, one week, T-GCN's files); put "
        "`los_speed.csv` and `los_adj.csv` in `data/traffic/` first (see `docs/traffic.md`)."
    ),
)
