"""``python -m cvtasks evaluate ckpt=PATH [data=...]``: test metrics and plots of a checkpoint.

The metrics come from the task's own test loop (Lightning's ``Trainer.test``), as at the end of
training, so ``metrics.json`` repeats the run's ``test/*`` numbers on the same data. A second
pass through the inference path (:class:`~cvtasks.inference.Predictor`) feeds the task's
:class:`~cvtasks.cli.reports.Report`: its charts (confusion matrix, per-class IoU, PCK curve,
ROC curve) and ``worst.png``, a grid of the worst test predictions.
"""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from cvtasks.cli.build import to_dict
from cvtasks.cli.common import TrainedModel, load_trained, run_command
from cvtasks.cli.reports import REPORTS
from cvtasks.config import CONFIG_DIR, setup_hydra
from cvtasks.inference import Predictor
from cvtasks.io import write_json
from cvtasks.registry import DATASETS

log = logging.getLogger(__name__)

#: data keys that describe the model's input: always the checkpoint's, whatever the data.
MODEL_INPUT_KEYS = ("image_size", "mean", "std")


def data_config(model: TrainedModel, chosen: dict[str, Any]) -> dict[str, Any]:
    """The data to evaluate on: ``chosen`` (``data=...``) or the training run's, with the
    model's own input size and normalization."""
    data = dict(chosen or model.data)
    if not data.get("name"):
        raise ValueError("no data to evaluate on: the checkpoint names none; pass data=<name>")
    trained = model.data
    data.update({key: trained[key] for key in MODEL_INPUT_KEYS if key in trained})
    return data


def build_test_data(model: TrainedModel, chosen: dict[str, Any]) -> pl.LightningDataModule:
    """The data module's test split, set up as in training (same seed)."""
    data = data_config(model, chosen)
    pl.seed_everything(int(model.config.get("seed", 0)), verbose=False)
    name = data.pop("name")
    datamodule = DATASETS.build(name, **data)
    datamodule.prepare_data()
    datamodule.setup("test")
    task_classes = getattr(model.task, "num_classes", None)
    data_classes = getattr(datamodule, "num_classes", None) if task_classes else None
    if task_classes and data_classes and task_classes != data_classes:
        raise ValueError(
            f"data={name} has {data_classes} classes but the model was trained on {task_classes}"
        )
    log.info("evaluating on data=%s", name)
    return datamodule


def test_metrics(
    model: TrainedModel, datamodule: pl.LightningDataModule, cfg: DictConfig
) -> tuple[dict[str, float], int]:
    """``test/*`` metrics of the task's own test loop, and how many batches it ran."""
    trainer: pl.Trainer = instantiate(cfg.trainer)
    trainer.test(model.task, datamodule=datamodule, verbose=False)
    metrics = {
        key: float(value)
        for key, value in sorted(trainer.callback_metrics.items())
        if key.startswith("test/") and not key.endswith(("_step", "_epoch"))
    }
    return metrics, int(sum(trainer.num_test_batches))


def write_plots(
    model: TrainedModel,
    datamodule: pl.LightningDataModule,
    metrics: dict[str, float],
    cfg: DictConfig,
    output: Path,
    num_batches: int,
) -> list[str]:
    """The task's charts and the worst-predictions grid from the first ``num_batches`` test
    batches (those the metrics saw); returns the files written."""
    report_class = REPORTS.get(model.task_name)
    if report_class is None:
        log.info("task %s has no evaluation plots", model.task_name)
        return []
    predictor = Predictor(model.task, cfg.device, precision="32")
    report = report_class(predictor, model.mean, model.std, keep=int(cfg.worst))
    for batch in itertools.islice(datamodule.test_dataloader(), num_batches):
        if batch["image"].shape[0]:
            report.update(predictor.forward(batch["image"]), batch)
    pictures = report.charts(metrics)
    if (grid := report.worst_grid()) is not None:
        pictures["worst"] = grid
    for name, picture in pictures.items():
        picture.save(output / f"{name}.png")
    return [f"{name}.png" for name in pictures]


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run the ``evaluate`` command; returns what it wrote into ``metrics.json``."""
    start = time.perf_counter()
    model = load_trained(cfg.ckpt, cfg.get("expect_task"))
    datamodule = build_test_data(model, to_dict(cfg.get("data")))
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    metrics, num_batches = test_metrics(model, datamodule, cfg)
    plots = write_plots(model, datamodule, metrics, cfg, output, num_batches)
    summary = {
        **metrics,
        "task": model.task_name,
        "checkpoint": str(model.path),
        "data": data_config(model, to_dict(cfg.get("data"))),
        "reports": {"test": model.task.test_reports},
        "plots": plots,
        "time_s": round(time.perf_counter() - start, 2),
    }
    write_json(output / "metrics.json", summary)
    for key, value in metrics.items():
        print(f"{key:28s} {value:.4f}")
    print(f"metrics and plots in {output.resolve()}")
    return summary


@hydra.main(config_path=str(CONFIG_DIR), config_name="evaluate", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    run_command(evaluate, cfg)


def main() -> None:
    """Console entry point (``python -m cvtasks evaluate key=value ...``)."""
    setup_hydra()
    _hydra_main()
