"""One LightningCLI for every app: same flags everywhere, runs written to ``runs/<app>/<name>/``.

``python -m apps.<app> fit -c configs/<app>/default.yaml`` — the run name defaults to the config file's
stem (``--run_name`` overrides it). A run directory holds ``checkpoints/`` (best + last) and one log folder
per invocation (``fit/``, ``test/``, ``fit-2/`` after a resume, …) with ``config.yaml``, ``metrics.csv``,
TensorBoard events and ``figures/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

RUNS_ROOT = Path("runs")


class ManyheadsCLI(LightningCLI):
    """LightningCLI with the house defaults: seed 0, overwriting config, loggers and checkpoints under
    ``runs/<app>/<run_name>/``, a rich progress bar."""

    def __init__(self, model_class: type, datamodule_class: type, app: str, **kwargs: Any) -> None:
        self.app = app
        super().__init__(
            model_class,
            datamodule_class,
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--run_name",
            type=str | None,
            default=None,
            help="Run directory name under runs/<app>/ (default: the config file's stem).",
        )

    def _run_name(self) -> str:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        if config.get("run_name"):
            return config["run_name"]
        configs = config.get("config") or []
        return Path(str(configs[-1])).stem if configs else "default"

    def run_dir(self) -> Path:
        return RUNS_ROOT / self.app / self._run_name()

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """Inject loggers, checkpointing and the progress bar unless the config sets its own."""
        run_dir = self.run_dir()
        trainer_config = (
            self.config_init[self.subcommand]["trainer"]
            if self.subcommand
            else (self.config_init["trainer"])
        )
        if trainer_config.get("logger") in (None, True):
            log_dir = fresh_log_dir(run_dir, self.subcommand or "run")
            trainer_config["logger"] = [
                CSVLogger(save_dir=str(run_dir.parent), name=run_dir.name, version=log_dir.name),
                TensorBoardLogger(
                    save_dir=str(run_dir.parent), name=run_dir.name, version=log_dir.name
                ),
            ]
        if trainer_config.get("default_root_dir") is None:
            trainer_config["default_root_dir"] = str(run_dir)
        callbacks = kwargs.setdefault("callbacks", [])
        monitor = getattr(self.model, "monitor", None)
        mode = getattr(self.model, "monitor_mode", "min")
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            callbacks.append(
                ModelCheckpoint(
                    dirpath=str(run_dir / "checkpoints"),
                    monitor=monitor,
                    mode=mode,
                    save_last=True,
                    filename="best" if monitor else "epoch{epoch}",
                    auto_insert_metric_name=False,
                )
            )
        if trainer_config.get("enable_progress_bar", True) is not False:
            callbacks.append(RichProgressBar())
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
        return super().instantiate_trainer(**kwargs)


def fresh_log_dir(run_dir: Path, subcommand: str) -> Path:
    """``<run_dir>/<subcommand>``, or ``<subcommand>-2``, ``-3``… when taken: a resumed fit or a second
    test never overwrites the logs of an earlier one."""
    candidate, n = run_dir / subcommand, 1
    while candidate.exists():
        n += 1
        candidate = run_dir / f"{subcommand}-{n}"
    return candidate


def cli_main(
    model_class: type,
    datamodule_class: type,
    app: str,
    args: list[str] | None = None,
    run: bool = True,
) -> ManyheadsCLI:
    """Entry point of ``python -m apps.<app>``; ``args`` replaces ``sys.argv`` (tests, the demo)."""
    return ManyheadsCLI(model_class, datamodule_class, app, args=args, run=run)
