"""TrafficTask: STTN's masked-MAE training, the field's metrics at 15/30/60 minutes beside the two
baselines, forecast figures, attention maps on the sensor graph, and the prediction file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from apps.traffic.graph import SensorGraph, kilometres
from apps.traffic.metrics import ForecastMetrics, masked_mae
from apps.traffic.model import STTN, STTNConfig
from apps.traffic.plots import attention_figures, forecast_figure
from apps.traffic.windows import Standardizer, TrafficBatch
from core.inspect import Recording, record
from core.train import AppTask, as_config
from core.train.figures import write_png

BASELINES = ("HA", "last_value")


class TrafficTask(AppTask):
    """Train :class:`STTN` on masked MAE in the data's units, evaluate MAE/RMSE/MAPE per horizon.

    Args:
        net: STTN's hyper-parameters.
        graph, scaler, in_channels, history, horizon, interval_minutes: linked from the datamodule
            (the road graph, the z-score of the readings, the input width and the window lengths).
        report_steps: horizon steps reported on their own (3, 6, 12 → 15, 30, 60 minutes).
        figure_sensors: sensors drawn in the forecast figure (indices; default: 4 spread over the
            network). Evaluation only, not checkpointed.
        optimizer, scheduler, scheduler_interval, figure_examples: see :class:`core.train.AppTask`
            (``figure_examples``: forecast windows kept for the figure; 288 = one day at 5 min).
    """

    monitor = "val/MAE"
    monitor_mode = "min"
    prediction_suffix = ".csv"

    def __init__(
        self,
        graph: SensorGraph,
        scaler: Standardizer,
        net: STTNConfig = STTNConfig(),
        in_channels: int = 2,
        history: int = 12,
        horizon: int = 12,
        interval_minutes: int = 5,
        report_steps: tuple[int, ...] = (3, 6, 12),
        figure_sensors: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["figure_sensors"])
        self.graph = as_config(SensorGraph, graph)
        self.scaler = as_config(Standardizer, scaler)
        self.config = as_config(STTNConfig, net)
        self.model = STTN(self.config, self.graph, in_channels, history, horizon)
        self.interval_minutes, self.report_steps = interval_minutes, report_steps
        n = self.graph.num_nodes
        self.figure_sensors = figure_sensors or sorted({round(i * (n - 1) / 3) for i in range(4)})

        def metrics() -> ForecastMetrics:
            return ForecastMetrics(horizon, report_steps, interval_minutes)

        self.metrics = torch.nn.ModuleDict(
            {"val": metrics(), "test": metrics()} | {f"test_{b}": metrics() for b in BASELINES}
        )

    def forecast(self, batch: TrafficBatch) -> torch.Tensor:
        """``[B, T_out, N]`` in the data's units."""
        return self.scaler.denormalize(self.model.forecast(batch.x, batch.future))

    def training_step(self, batch: TrafficBatch, batch_idx: int) -> torch.Tensor:
        y, mask = batch.y, batch.y_mask
        if self.config.rollout:  # the official code's training: the next step only
            prediction, y, mask = self.model(batch.x), y[:, :1], mask[:, :1]
        else:
            prediction = self.model(batch.x)
        loss = masked_mae(self.scaler.denormalize(prediction), y, mask)
        self.log_loss("train", loss, mask.sum())
        return loss

    def _evaluate(self, batch: TrafficBatch, stage: str) -> torch.Tensor:
        prediction = self.forecast(batch)
        self.log_loss(stage, masked_mae(prediction, batch.y, batch.y_mask), batch.y_mask.sum())
        self.metrics[stage].update(prediction, batch.y, batch.y_mask)
        self.keep_examples(self._examples(batch, prediction))
        return prediction

    def _examples(self, batch: TrafficBatch, prediction: torch.Tensor) -> list[tuple[Any, ...]]:
        """What the figures need of the windows still to keep: ``(first target time, x, y,
        forecast, observed)``, the last three at the figure's sensors."""
        room = max(0, self.figure_examples - len(self.examples))
        sensors = self.figure_sensors
        return [
            (
                batch.target_time[i],
                batch.x[i].cpu(),
                batch.y[i][:, sensors].cpu(),
                prediction[i][:, sensors].cpu(),
                batch.y_mask[i][:, sensors].cpu(),
            )
            for i in range(min(room, len(batch)))
        ]

    def validation_step(self, batch: TrafficBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_metrics("val", self.metrics["val"])

    def test_step(self, batch: TrafficBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")
        self.metrics["test_last_value"].update(
            batch.last_value[:, None, :].expand_as(batch.y), batch.y, batch.y_mask
        )
        if batch.historical is not None:
            self.metrics["test_HA"].update(batch.historical, batch.y, batch.y_mask)

    def on_test_epoch_end(self) -> None:
        self.log_metrics("test", self.metrics["test"])
        for baseline in BASELINES:
            metric = self.metrics[f"test_{baseline}"]
            if metric.update_called:
                self.log_metrics(f"test/{baseline}", metric)

    def predict_step(self, batch: TrafficBatch, batch_idx: int) -> list[tuple[Any, np.ndarray]]:
        forecast = self.forecast(batch).cpu().numpy()
        return list(zip(batch.target_time, forecast, strict=True))

    def format_prediction(self, prediction: tuple[Any, np.ndarray]) -> str:
        """One window as ``T_out`` CSV rows ``target_time,horizon_minutes,<one value per sensor>``
        (the header line names the sensors)."""
        first_time, forecast = prediction
        step = np.timedelta64(self.interval_minutes, "m")
        rows = []
        for k, values in enumerate(forecast, start=1):
            time = (
                ""
                if first_time is None
                else np.datetime_as_string(first_time + (k - 1) * step, "m")
            )
            cells = ",".join(f"{v:.3f}" for v in values)
            rows.append(f"{time},{k * self.interval_minutes},{cells}")
        return "\n".join(rows)

    def prediction_header(self) -> str:
        return "target_time,horizon_minutes," + ",".join(self.graph.sensor_ids)

    def draw_examples(self, stage: str, examples: list[Any]) -> dict[str, Figure]:
        figures = {"forecast": forecast_figure(examples, self.figure_sensors, self.graph,
                                               self.interval_minutes, self.report_steps)}  # fmt: skip
        window = examples[0][1][None].to(self.device)
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad(), record(self.model, mode="weights") as recording:
            self.model(window)
        self.model.train(was_training)
        return figures | attention_figures(recording, self.graph, self.model.history, False)

    def render_attention(self, recording: Recording, out_dir: Path) -> list[Path]:
        """Hook of ``core.inspect.AttentionInspector``: per head, the spatial attention of the last
        history step drawn on the sensor graph and the temporal attention as a T_in × T_in map, and
        the statistics of spatial against temporal heads."""
        figures = attention_figures(recording, self.graph, self.model.history)
        return [write_png(figure, out_dir / f"{name}.png") for name, figure in figures.items()]

    def attention_positions(self, batch: TrafficBatch) -> torch.Tensor | None:
        """Hook of ``core.inspect.AttentionInspector``: sensor positions in km ``[N, 2]`` when the
        data has coordinates, so the spatial heads' ``mean_distance`` is a road-map distance (the
        temporal heads, of another length, then report none). None without coordinates, or when
        N equals the history length and the two kinds of layer could not be told apart."""
        if self.graph.coordinates is None or self.graph.num_nodes == self.model.history:
            return None
        return torch.from_numpy(kilometres(np.asarray(self.graph.coordinates))).float()

    def evaluation_protocol(self) -> dict[str, Any]:
        steps = ", ".join(f"{s} ({s * self.interval_minutes} min)" for s in self.report_steps)
        return {
            **super().evaluation_protocol(),
            "horizon_steps_reported": steps,
            "averaged": "MAE/RMSE/MAPE pooled over every observed target of every horizon step",
            "masking": "targets that are missing (see data.masking) are left out of every metric; "
            "MAPE also leaves out zero targets and is in percent",
            "forecast": "rolled out one step at a time" if self.config.rollout else "direct",
            "baselines": "HA: mean of the training split at the same slot of the week (of the day "
            "where the week slot is unseen); last_value: the last observed reading of the history",
        }
