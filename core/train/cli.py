"""One LightningCLI for every app: the same flags everywhere, runs written to ``runs/<app>/<name>/``.

``python -m apps.<app> fit -c configs/<app>/default.yaml [-c configs/<app>/<overlay>.yaml]`` — the run
name is the last config file's stem (``--run_name`` overrides it). Each invocation gets its own folder
(``fit/``, ``test/``, ``fit-2/`` …) with ``config.yaml``, ``metrics.csv``, TensorBoard events,
``figures/``, and for ``fit`` its ``checkpoints/`` (``best.ckpt``, ``last.ckpt``); ``--ckpt_path best``
or ``last`` picks the newest fit's file. A ``test`` also writes ``results.json``; a ``predict`` writes
``predictions.*``. Bad input (:class:`core.train.errors.InputError`, a missing file, a bad flag) ends the
run with one line on stderr and exit status 2.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import ArgumentError
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from core.train.callbacks import ExampleFigures, PredictionWriter, ResultsWriter, RunCheckpoint
from core.train.errors import InputError
from core.train.runs import (
    CHECKPOINT_ALIASES,
    fit_invocations,
    fresh_log_dir,
    remove_stub,
    resolve_checkpoint,
    runs_root,
)

LOG_DIR_VAR = "MANYHEADS_LOG_DIR"  # set while a subcommand runs, for the processes ddp starts
Link = tuple[str, str]  # ("data.<attribute>", "model.<argument>"), applied once both exist


class _NoAdvertising(logging.Filter):
    """Drop Lightning's "💡 Tip: … try installing …" adverts from the run log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoAdvertising())


def _show_app_logs() -> None:
    """Print the apps' INFO records (data counts, what was filtered or generated) on stderr, as
    Lightning prints its own; without a handler Python would show only warnings."""
    apps_log = logging.getLogger("apps")
    if not apps_log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        apps_log.addHandler(handler)
        apps_log.setLevel(logging.INFO)


class ManyheadsCLI(LightningCLI):
    """LightningCLI with the house defaults: seed 0, no flag abbreviations, run folders under
    ``runs/<app>/<run_name>/``, the shared callbacks, and data-dependent model arguments linked from
    the datamodule (``links``) so a checkpoint carries them."""

    def __init__(
        self,
        model_class: type,
        datamodule_class: type,
        app: str,
        links: Sequence[Link] = (),
        **kwargs: Any,
    ) -> None:
        self.app, self.links = app, tuple(links)
        self.log_dir: Path | None = None
        super().__init__(
            model_class,
            datamodule_class,
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
            parser_kwargs={"exit_on_error": False, "allow_abbrev": False},
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--run_name",
            type=str | None,
            default=None,
            help="Run folder name under runs/<app>/ (default: the last config file's stem).",
        )
        for source, target in self.links:
            parser.link_arguments(source, target, apply_on="instantiate")

    def _config(self) -> Any:
        subcommand = self.config.get("subcommand")
        return self.config[subcommand] if subcommand else self.config

    def run_dir(self) -> Path:
        config = self._config()
        name = config.get("run_name")
        if not name:
            configs = config.get("config") or []
            name = Path(str(configs[-1])).stem if configs else "default"
        return runs_root() / self.app / name

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then turn ``--ckpt_path best|last`` into the newest fit's file (before Lightning
        reads the checkpoint's hyper-parameters) and say what a new ``fit`` into a used run does."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config, run_dir = self._config(), self.run_dir()
        if config.get("ckpt_path") in CHECKPOINT_ALIASES:
            config["ckpt_path"] = str(resolve_checkpoint(run_dir, config["ckpt_path"]))
        first_process = LOG_DIR_VAR not in os.environ
        if (
            subcommand == "fit"
            and not config.get("ckpt_path")
            and first_process
            and fit_invocations(run_dir)
        ):
            print(
                f"{run_dir} already holds a fit; this one starts from scratch in its own folder "
                f"(to continue training instead, pass --ckpt_path last)",
                file=sys.stderr,
            )

    def _parse_ckpt_path(self) -> None:
        """Lightning's merge of the checkpoint's hyper-parameters into the config, leaving out the
        link targets: the links recompute them from the data, and some (a road graph, a
        normaliser) are no command-line options that the parser would accept."""
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not path or not Path(path).is_file():
            return
        checkpoint = torch.load(path, weights_only=True, map_location="cpu")
        linked = {target.removeprefix("model.") for _, target in self.links} | {"_instantiator"}
        hparams = {
            k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if k not in linked
        }
        if hparams:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """Loggers and the shared callbacks, unless the config lists its own."""
        run_dir = self.run_dir()
        trainer_config = self._get(self.config_init, "trainer")
        listed = [*(trainer_config.get("callbacks") or []), *kwargs.get("callbacks", [])]
        kwargs["callbacks"] = callbacks = list(listed)  # kwargs replace the config's list
        if trainer_config.get("logger") in (None, True):
            # the processes a ddp launch starts use the folder the launching process chose
            chosen = os.environ.get(LOG_DIR_VAR)
            self.log_dir = (
                Path(chosen) if chosen else fresh_log_dir(run_dir, self.subcommand or "run")
            )
            version = self.log_dir.name
            trainer_config["logger"] = [
                CSVLogger(save_dir=str(run_dir.parent), name=run_dir.name, version=version),
                TensorBoardLogger(save_dir=str(run_dir.parent), name=run_dir.name, version=version),
            ]
        if trainer_config.get("default_root_dir") is None:
            trainer_config["default_root_dir"] = str(self.log_dir or run_dir)
        folder = self.log_dir or run_dir
        if self.subcommand not in ("fit", None):  # nothing to save, no stale monitor state
            trainer_config["enable_checkpointing"] = False
        elif not any(isinstance(c, RunCheckpoint) for c in listed):
            callbacks.append(
                RunCheckpoint(folder / "checkpoints", self.model.monitor, self.model.monitor_mode)
            )
        if trainer_config.get("enable_progress_bar", True) is not False and not any(
            isinstance(c, ProgressBar) for c in listed
        ):
            callbacks.append(RichProgressBar())
        if not any(isinstance(c, LearningRateMonitor) for c in listed):
            callbacks.append(LearningRateMonitor(logging_interval="epoch"))
        callbacks += [
            ExampleFigures(),
            PredictionWriter(),
            ResultsWriter(self._get(self.config, "seed_everything")),
        ]
        return super().instantiate_trainer(**kwargs)

    def _run_subcommand(self, subcommand: str) -> None:
        """Run it; a failed invocation that saved nothing leaves no folder behind. Then say where
        the run was written."""
        launching = self.log_dir is not None and LOG_DIR_VAR not in os.environ
        if launching:
            os.environ[LOG_DIR_VAR] = str(self.log_dir)
        try:
            super()._run_subcommand(subcommand)
        except BaseException:
            if self.log_dir is not None and self.trainer.is_global_zero:
                remove_stub(self.log_dir)
            raise
        finally:
            if launching:
                del os.environ[LOG_DIR_VAR]
        if self.log_dir is not None and self.trainer.is_global_zero:
            print(f"{subcommand} written to {self.log_dir}")
            checkpoint = self.trainer.checkpoint_callback
            if subcommand == "fit" and checkpoint is not None and checkpoint.best_model_path:
                print(f"best checkpoint: {checkpoint.best_model_path}")


def cli_main(
    model_class: type,
    datamodule_class: type,
    app: str,
    args: list[str] | None = None,
    links: Sequence[Link] = (),
    run: bool = True,
) -> ManyheadsCLI:
    """Entry point of ``python -m apps.<app>``; ``args`` replaces ``sys.argv`` (tests, the demo).

    Bad input — :class:`InputError`, a missing file, an unknown or malformed flag — exits with status 2
    and one line on stderr; anything else (a bug) raises with its traceback.
    """
    _show_app_logs()
    try:
        return ManyheadsCLI(model_class, datamodule_class, app, links=links, args=args, run=run)
    except (InputError, FileNotFoundError, ArgumentError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
