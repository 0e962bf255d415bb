"""``python -m cvtasks evaluate ckpt=PATH [data=...]``: test metrics and plots of a checkpoint.

The metrics come from the task's own test loop (Lightning's ``Trainer.test``), as at the end of
training, so ``metrics.json`` repeats the run's ``test/*`` numbers on the same data. A second
pass through the inference path (:class:`~cvtasks.inference.Predictor`) feeds the task's
report (the :class:`~cvtasks.viz.report.Report` its class names): its charts (confusion matrix,
per-class IoU, PCK curve, ROC curve) and ``worst.png``, a grid of the worst test predictions.
With ``tta=flip`` (or ``flip_scale``) both passes run the network on augmented views of each
batch and merge them (:mod:`cvtasks.tta`). With ``tile=SIZE`` both run over windows of each
test image at its native size (:mod:`cvtasks.cli.tiles`), each window's views merged first.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import Dataset

from cvtasks.cli.build import check_target_kind, to_dict
from cvtasks.cli.common import TrainedModel, load_trained, run_command
from cvtasks.cli.outputs import refuse_run_folder
from cvtasks.cli.tiles import (
    TiledPredictor,
    native_test_data,
    tiled_detection_metrics,
    tiled_task,
    tiling_from,
)
from cvtasks.config import CONFIG_DIR, setup_hydra
from cvtasks.inference import Predictor
from cvtasks.io import write_json
from cvtasks.registry import DATASETS
from cvtasks.tiling import Tiling
from cvtasks.tta import applied

log = logging.getLogger(__name__)

#: data keys that describe the model's input: always the checkpoint's, whatever the data.
MODEL_INPUT_KEYS = ("image_size", "mean", "std", "crop_pct", "interpolation")
#: what a key the checkpoint lacks (an older run's) means, in place of a data config's `auto`
INPUT_DEFAULTS = {"crop_pct": 1.0, "interpolation": "bilinear"}


def data_config(model: TrainedModel, chosen: dict[str, Any]) -> dict[str, Any]:
    """The data to evaluate on: ``chosen`` (``data=...``) or the training run's, with the
    model's own input size and normalization."""
    data = dict(chosen or model.data)
    if not data.get("name"):
        raise ValueError("no data to evaluate on: the checkpoint names none; pass data=<name>")
    root = data.get("root")
    if not chosen and root and not Path(root).expanduser().exists():
        # a folder named by the checkpoint is only read, never created (a built-in dataset
        # would write itself there)
        raise ValueError(
            f"the checkpoint's data.root={root} does not exist here: pass "
            f"data={data['name']} data.root=PATH"
        )
    trained = model.data
    data.update({key: trained[key] for key in MODEL_INPUT_KEYS if key in trained})
    data.update({k: v for k, v in INPUT_DEFAULTS.items() if data.get(k) == "auto"})
    return data


def build_test_data(model: TrainedModel, chosen: dict[str, Any]) -> pl.LightningDataModule:
    """The data module's test split, set up as in training (same seed)."""
    data = data_config(model, chosen)
    pl.seed_everything(int(model.config.get("seed", 0)), verbose=False)
    name = data.pop("name")
    datamodule = DATASETS.build(name, **data)
    check_target_kind(model.task_name, name, datamodule)  # before anything is written or read
    datamodule.prepare_data()
    datamodule.setup("test")
    task_classes = getattr(model.task, "num_classes", None)
    data_classes = getattr(datamodule, "num_classes", None) if task_classes else None
    if task_classes and data_classes and task_classes != data_classes:
        raise ValueError(
            f"data={name} has {data_classes} classes but the model was trained on {task_classes}"
        )
    remap = match_names(model, datamodule, name)
    if remap:
        datamodule.test_dataset = RemappedTargets(datamodule.test_dataset, remap)
    log.info("evaluating on data=%s", name)
    return datamodule


#: names a model and its data must agree on, and the sample keys whose indices they name
NAMED_TARGETS = {
    "class_names": ("label", "mask", "orig_mask"),
    "keypoint_names": ("keypoints", "visible"),
}


def match_names(
    model: TrainedModel, datamodule: pl.LightningDataModule, data_name: str
) -> dict[str, tuple[torch.Tensor, int]]:
    """Compare the data's class (or keypoint) names with the model's, in order.

    Returns:
        Nothing when they agree; when the data names the same things in another order, for each
        sample key to renumber: the model index of each data index, and the index the names
        start at in the labels (1 where label 0 is *nothing*, as in localization).

    Raises:
        ValueError: the data names other classes (or points) than the model was trained on.
    """
    remap: dict[str, tuple[torch.Tensor, int]] = {}
    for key, targets in NAMED_TARGETS.items():
        trained = list(model.task.hparams.get(key) or [])
        try:
            given = list(getattr(datamodule, key, None) or [])
        except RuntimeError:  # a data module that cannot tell its names
            given = []
        if not trained or not given or trained == given:
            continue
        what = key.replace("_", " ")
        if sorted(trained) != sorted(given):
            raise ValueError(
                f"data={data_name} has {what} {given}, but the model was trained on {trained}: "
                f"evaluate on data with the model's {what}"
            )
        order = torch.tensor([trained.index(n) for n in given])  # data index -> model index
        labels = getattr(model.task, "label_names", None) or trained
        first = len(labels) - len(trained)
        log.warning("data=%s lists the model's %s in another order: renumbering", data_name, what)
        remap.update({target: (order, first) for target in targets})
    return remap


class RemappedTargets(Dataset):
    """A test split whose targets are renumbered into the model's class or point order.

    ``label`` and ``mask`` values are mapped (values outside the named classes, *nothing* and
    the 255 of ignored pixels, stay as they are); ``keypoints`` and ``visible`` are reordered
    along the point axis.
    """

    def __init__(self, dataset: Dataset, remap: dict[str, tuple[torch.Tensor, int]]) -> None:
        self.dataset = dataset
        self.remap = remap

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        sample = self.dataset[index]
        if sample is None:  # a skipped bad image
            return sample
        for key, (order, first) in self.remap.items():
            if key not in sample:
                continue
            value = sample[key]
            if key in NAMED_TARGETS["keypoint_names"]:
                reordered = torch.empty_like(value)
                reordered[order] = value
                sample[key] = reordered
            else:
                named = (value >= first) & (value < first + len(order))
                index_ = (value - first).clamp(0, len(order) - 1).long()
                sample[key] = torch.where(named, order[index_] + first, value).to(value.dtype)
        return sample


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


def tiled_test_metrics(
    model: TrainedModel, datamodule: pl.LightningDataModule, cfg: DictConfig, tiling: Tiling
) -> tuple[dict[str, float], int]:
    """``test/*`` metrics over windows of the native-size test split and the batches scored:
    segmentation through its own test loop (a copy whose forward blends the windows), detection
    from the merged boxes of each image. The test reports go to ``model.task.test_reports``."""
    if model.task.target_kind == "mask":
        tiled = replace(model, task=tiled_task(model.task, tiling))
        metrics, num_batches = test_metrics(tiled, datamodule, cfg)
        model.task.test_reports.update(tiled.task.test_reports)
        return metrics, num_batches
    # called where tta= already wraps model.task's network: the copy inherits it
    predictor = Predictor(model.task, cfg.device, precision="32")
    limit = cfg.trainer.get("limit_test_batches")
    tiled_predictor = TiledPredictor(predictor, tiling)
    metrics, num_batches, reports = tiled_detection_metrics(tiled_predictor, datamodule, limit)
    model.task.test_reports.update(reports)
    return metrics, num_batches


def write_plots(
    model: TrainedModel,
    datamodule: pl.LightningDataModule,
    metrics: dict[str, float],
    cfg: DictConfig,
    output: Path,
    num_batches: int,
    tiling: Tiling | None = None,
) -> list[str]:
    """The task's charts and the worst-predictions grid from the first ``num_batches`` test
    batches (those the metrics saw), over windows with ``tiling``; returns the files written."""
    report_class = getattr(model.task, "report", None)
    if report_class is None:
        log.info("task %s has no evaluation plots", model.task_name)
        return []
    predictor = Predictor(model.task, cfg.device, precision="32", tta=cfg.get("tta"))
    if tiling is not None:  # charts and worst pictures are drawn from tiled predictions too
        predictor = TiledPredictor(predictor, tiling)  # type: ignore[assignment]
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
    refuse_run_folder(cfg.output)
    model = load_trained(cfg.ckpt, cfg.get("expect_task"))
    tiling = tiling_from(cfg, model.task, model.task_name)
    datamodule = build_test_data(model, to_dict(cfg.get("data")))
    if tiling is not None:  # scored at each image's own size
        datamodule = native_test_data(datamodule)
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    with applied(model.task, cfg.get("tta")) as tta:  # the test loop's network, augmented
        if tiling is None:
            metrics, num_batches = test_metrics(model, datamodule, cfg)
        else:
            metrics, num_batches = tiled_test_metrics(model, datamodule, cfg, tiling)
    plots = write_plots(model, datamodule, metrics, cfg, output, num_batches, tiling)
    summary = {
        **metrics,
        "task": model.task_name,
        "checkpoint": str(model.path),
        "data": data_config(model, to_dict(cfg.get("data"))),
        "reports": {"test": model.task.test_reports},
        "plots": plots,
        "tta": tta,
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
