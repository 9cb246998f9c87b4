"""AttentionInspector in `trainer.validate`/`trainer.test` of a tiny attention model, and its flags
through LightningCLI (``--trainer.callbacks+=core.inspect.AttentionInspector``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from core.inspect import AttentionInspector, Recording, Redistribution, record
from core.nn import TransformerEncoder, TransformerEncoderLayer

LENGTH, FEATURES, BATCH = 10, 3, 8


class TinyAttentionTask(L.LightningModule):
    """Regress the sum of each token's features with a 2-layer Transformer encoder."""

    def __init__(self, d_model: int = 16, n_heads: int = 2) -> None:
        super().__init__()
        self.embed = torch.nn.Linear(FEATURES, d_model)
        self.encoder = TransformerEncoder(
            lambda: TransformerEncoderLayer(d_model, n_heads, dropout=0.0), 2
        )
        self.head = torch.nn.Linear(d_model, 1)
        self.rendered: list[Recording] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x)))[..., 0]

    def loss(self, batch: list[torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(self(x), y)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.loss(batch)

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", self.loss(batch))

    def test_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.log("test/loss", self.loss(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def attention_positions(self, batch: list[torch.Tensor]) -> torch.Tensor:
        return batch[0][..., :2] * 100.0  # the first two features as coordinates

    def render_attention(self, recording: Recording, out_dir: Path) -> list[Path]:
        self.rendered.append(recording)
        layer = recording.layer_names()[0]
        fig, ax = plt.subplots()
        ax.imshow(recording.weights[layer][0].weights[0][0].numpy())
        path = out_dir / "first_head.png"
        fig.savefig(path)
        plt.close(fig)
        return [path]


class TinyData(L.LightningDataModule):
    def __init__(self, size: int = 32) -> None:
        super().__init__()
        x = torch.randn(size, LENGTH, FEATURES, generator=torch.Generator().manual_seed(0))
        self.data = TensorDataset(x, x.sum(-1))

    def loader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=BATCH)

    train_dataloader = val_dataloader = test_dataloader = loader


def trainer_for(tmp_path: Path, callback: AttentionInspector) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=CSVLogger(tmp_path),
        callbacks=[callback],
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=1,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("stage", ["validate", "test"])
def test_writes_statistics_figure_and_rendering(tmp_path: Path, stage: str) -> None:
    torch.manual_seed(0)
    task, data = TinyAttentionTask(), TinyData()
    trainer = trainer_for(tmp_path, AttentionInspector(num_batches=2, weight_batches=1))
    getattr(trainer, stage)(task, datamodule=data, verbose=False)
    out = Path(trainer.log_dir) / "attention" / stage
    assert (out / "heads.png").stat().st_size > 0
    assert (out / "first_head.png").is_file()
    rows = read_csv(out / "statistics.csv")
    table = {(r["layer"], r["head"], r["statistic"]): float(r["value"]) for r in rows}
    # the same two batches recorded by hand give the same statistics
    batches = list(data.loader())[:2]
    with torch.no_grad(), record(task) as expected:
        for x, _ in batches:
            expected.positions = x[..., :2] * 100.0
            task(x)
    for layer, stats in expected.statistics().items():
        for _, head, name, value in stats.rows(layer):
            assert table[(layer, str(head), name)] == pytest.approx(value, rel=1e-6, abs=1e-9)
    assert {r["layer"] for r in rows} == {
        "encoder.layers.0.self_attn",
        "encoder.layers.1.self_attn",
        "all",
    }
    assert any(r["statistic"] == "mean_distance" for r in rows)
    (rendered,) = task.rendered
    assert len(rendered.batches) == 1 and len(rendered.weights["encoder.layers.0.self_attn"]) == 1


def test_fit_records_nothing(tmp_path: Path) -> None:
    trainer = trainer_for(tmp_path, AttentionInspector())
    trainer.fit(TinyAttentionTask(), datamodule=TinyData())
    assert not (Path(trainer.log_dir) / "attention").exists()


def test_redistribution_reports_metrics_with_and_without(tmp_path: Path) -> None:
    torch.manual_seed(0)
    task, data = TinyAttentionTask(), TinyData()
    inspector = AttentionInspector(num_batches=1, redistribute=0.8, sink_keys=[0, 1])
    trainer = trainer_for(tmp_path, inspector)
    (result,) = trainer.test(task, datamodule=data, verbose=False)
    assert task.trainer is trainer  # the module went back to the run that finished
    report = json.loads((Path(trainer.log_dir) / "attention/test/redistribution.json").read_text())
    loss = report["metrics"]["test/loss"]
    assert loss["baseline"] == pytest.approx(result["test/loss"])
    # the redistributed loss, computed by hand over the whole test set
    rule = Redistribution(0.8, sink_keys=[0, 1])
    with torch.no_grad(), record(task, redistribution=rule):
        losses = [task.loss(batch) * len(batch[0]) for batch in data.loader()]
    assert loss["redistributed"] == pytest.approx(float(sum(losses)) / len(data.data), rel=1e-5)
    assert loss["redistributed"] != pytest.approx(loss["baseline"], rel=1e-3)
    logged = read_csv(Path(trainer.log_dir) / "metrics.csv")
    assert any(row.get("redistributed/test/loss") for row in logged)
    assert (Path(trainer.log_dir) / "attention/test/redistributed_statistics.csv").is_file()


def test_cli_flags(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = [
        "test",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.callbacks+=core.inspect.AttentionInspector",
        "--trainer.callbacks.init_args.num_batches=3",
        "--trainer.callbacks.init_args.redistribute=0.5",
        '--trainer.callbacks.init_args.redistribute_heads={"encoder.layers.*.self_attn": [1]}',
        "--trainer.callbacks.init_args.sink_keys=[0]",
    ]
    cli = LightningCLI(
        TinyAttentionTask, TinyData, args=args, save_config_kwargs={"overwrite": True}
    )
    (inspector,) = [c for c in cli.trainer.callbacks if isinstance(c, AttentionInspector)]
    assert inspector.num_batches == 3
    assert inspector.redistribution == Redistribution(0.5, {"encoder.layers.*.self_attn": [1]}, [0])
    names = {path.name for path in inspector.paths}
    assert {"statistics.csv", "heads.png", "redistribution.json"} <= names
