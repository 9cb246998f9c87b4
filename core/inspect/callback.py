"""``AttentionInspector``: attention statistics, figures and redistribution for any app, from the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from core.inspect.figures import heads_figure
from core.inspect.recorder import Recording, WeightLimits
from core.inspect.redistribute import Redistribution
from core.inspect.stats import SINK_LINE, TOP_K
from core.train.figures import run_folder, write_png

Stage = Literal["validate", "test"]


class AttentionInspector(Callback):
    """Record the attention of the first batches of ``validate``/``test`` and write what it shows.

    Enable it from any app's CLI, no code needed::

        python -m apps.<app> test -c configs/<app>/default.yaml --ckpt_path best \\
            --trainer.callbacks+=core.inspect.AttentionInspector \\
            --trainer.callbacks.init_args.num_batches=4

    (``init_args`` flags after ``callbacks+=`` set the options of the callback just added.) During
    ``fit`` it does nothing. Under ``<log dir>/attention/<stage>/`` it writes, on rank 0:

    - ``statistics.csv``: ``layer, head, statistic, value`` (see :mod:`core.inspect.stats`);
    - ``heads.png``: every layer × head coloured by normalised entropy and by sink score;
    - the files of the task's ``render_attention`` hook, if it has one;
    - with ``redistribute > 0``: ``redistribution.json`` (each metric without and with), the
      redistributed run's ``redistributed_statistics.csv``, and the redistributed metrics logged to
      the run's loggers as ``redistributed/<metric>``.

    Task hooks (both optional):

    - ``render_attention(self, recording: Recording, out_dir: Path) -> list[Path]``: draw the attention
      in the field's terms and return the files written. ``recording.weights[layer]`` holds the kept
      :class:`~core.inspect.AttentionBatch` es of the first ``weight_batches`` batches (each with a
      ``batch_index`` into ``recording.batches``, the batches as the step received them);
      ``recording.layer_names(kind)`` finds layers by module type.
    - ``attention_positions(self, batch) -> Tensor | None``: token coordinates for ``mean_distance``
      in the field's units (``[B, L, C]`` dense, ``[T, C]`` packed; see :class:`Recording`).

    Args:
        num_batches: batches recorded (statistics) in each ``validate``/``test`` run.
        weight_batches: how many of them also keep their weights for ``render_attention`` (0: none;
            without the hook no weights are kept).
        top_k: k of the top-k mass.
        max_batches: kept forward batches per layer (:class:`~core.inspect.WeightLimits`).
        max_queries: kept queries per instance.
        max_layers: layers with kept weights.
        redistribute: fraction p of sink weight to redistribute (0: off). After the normal run the
            same ``validate``/``test`` runs again on one process with redistribution (every batch).
        redistribute_heads: layer name pattern → heads to redistribute (None: every head).
        sink_keys: fixed sink key indices (e.g. ``[0]``); None: detected per instance and head.
        sink_threshold: detection threshold on a key's mean weight.
    """

    def __init__(
        self,
        num_batches: int = 4,
        weight_batches: int = 1,
        top_k: int = TOP_K,
        max_batches: int = 8,
        max_queries: int = 4096,
        max_layers: int = 64,
        redistribute: float = 0.0,
        redistribute_heads: dict[str, list[int]] | None = None,
        sink_keys: list[int] | None = None,
        sink_threshold: float = SINK_LINE,
    ) -> None:
        if num_batches < 1 or not 0 <= weight_batches <= num_batches:
            raise ValueError(
                f"need num_batches ≥ 1 and 0 ≤ weight_batches ≤ num_batches, got "
                f"num_batches={num_batches}, weight_batches={weight_batches}"
            )
        self.num_batches, self.weight_batches, self.top_k = num_batches, weight_batches, top_k
        self.limits = WeightLimits(max_batches, max_queries, max_layers)
        self.redistribution = None
        if redistribute > 0:
            self.redistribution = Redistribution(
                redistribute, redistribute_heads, sink_keys, sink_threshold
            )
        self.recording: Recording | None = None
        self.recorded = 0
        self.paths: list[Path] = []

    # --- recording -------------------------------------------------------------------------------

    def _begin(self, trainer: L.Trainer, pl_module: L.LightningModule, fn: TrainerFn) -> None:
        if trainer.state.fn != fn:  # validation inside fit
            return
        self.recording = Recording(pl_module, "stats", top_k=self.top_k, limits=self.limits)
        self.recorded = 0

    def _batch_start(self, pl_module: L.LightningModule, batch: Any) -> None:
        if self.recording is None or self.recorded >= self.num_batches:
            return
        positions = getattr(pl_module, "attention_positions", None)
        self.recording.positions = positions(batch) if positions is not None else None
        drawn = hasattr(pl_module, "render_attention")  # weights are kept only to be drawn
        self.recording.keep_weights = drawn and self.recorded < self.weight_batches
        self.recording.begin_batch(batch)
        self.recording.start()

    def _batch_end(self) -> None:
        if self.recording is not None and self.recorded < self.num_batches:
            self.recording.stop()
            self.recorded += 1

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._begin(trainer, pl_module, TrainerFn.VALIDATING)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._begin(trainer, pl_module, TrainerFn.TESTING)

    def on_validation_batch_start(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._batch_start(pl_module, batch)

    on_test_batch_start = on_validation_batch_start

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._batch_end()

    on_test_batch_end = on_validation_batch_end

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if self.recording is not None:
            self.recording.stop()
            self.recording = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, pl_module, "validate")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, pl_module, "test")

    # --- outputs ---------------------------------------------------------------------------------

    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: Stage) -> None:
        recording, self.recording = self.recording, None
        if recording is None:
            return
        recording.stop()
        out_dir = run_folder(trainer) / "attention" / stage
        comparison = []
        if self.redistribution is not None:
            comparison = self._redistributed_run(trainer, pl_module, stage, out_dir)
        if not trainer.is_global_zero:
            return
        statistics = recording.statistics()
        self.paths = [recording.write_csv(out_dir / "statistics.csv")]
        if statistics:
            self.paths.append(write_png(heads_figure(statistics), out_dir / "heads.png"))
        render = getattr(pl_module, "render_attention", None)
        if render is not None and recording.weights:
            self.paths += render(recording, out_dir)
        self.paths += comparison

    def _redistributed_run(
        self, trainer: L.Trainer, pl_module: L.LightningModule, stage: Stage, out_dir: Path
    ) -> list[Path]:
        """Run ``stage`` again with redistribution in a second trainer on the same data, and write
        ``redistribution.json`` comparing each metric without and with it."""
        if trainer.world_size > 1:
            raise RuntimeError(
                "AttentionInspector(redistribute=...) compares metrics on one process; run "
                f"{stage} with --trainer.devices=1 (this run has {trainer.world_size} processes)"
            )
        baseline = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        device = trainer.strategy.root_device
        limit = trainer.limit_test_batches if stage == "test" else trainer.limit_val_batches
        shadow = L.Trainer(
            accelerator="gpu" if device.type == "cuda" else device.type,
            devices=[device.index] if device.type == "cuda" else 1,
            precision=trainer.precision,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=out_dir / "redistributed",
            **{"limit_test_batches" if stage == "test" else "limit_val_batches": limit},
        )
        run = shadow.test if stage == "test" else shadow.validate
        datamodule = trainer.datamodule
        loaders = trainer.test_dataloaders if stage == "test" else trainer.val_dataloaders
        recording = Recording(pl_module, top_k=self.top_k, redistribution=self.redistribution)
        try:
            with recording:
                if datamodule is not None:
                    results = run(pl_module, datamodule=datamodule, verbose=False)
                else:
                    results = run(pl_module, dataloaders=loaders, verbose=False)
        finally:  # hand the module (and data) back to the run that is finishing
            pl_module.trainer = trainer
            if datamodule is not None:
                datamodule.trainer = trainer
            pl_module.to(device)
        redistributed = {k: float(v) for result in results for k, v in result.items()}
        for logger in trainer.loggers:
            logged = {f"redistributed/{k}": v for k, v in redistributed.items()}
            logger.log_metrics(logged, step=trainer.global_step)
            logger.save()
        if not trainer.is_global_zero:
            return []
        redistribution = self.redistribution
        report = {
            "stage": stage,
            "redistribution": {
                "fraction": redistribution.fraction,
                "heads": redistribution.heads,
                "sink_keys": redistribution.sink_keys,
                "sink_threshold": redistribution.sink_threshold,
            },
            "metrics": {
                name: {"baseline": baseline.get(name), "redistributed": value}
                for name, value in sorted(redistributed.items())
            },
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "redistribution.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        return [path, recording.write_csv(out_dir / "redistributed_statistics.csv")]
