"""``tile=SIZE overlap=F`` of ``predict`` and ``evaluate``: dense tasks run over windows.

The window arithmetic is :mod:`cvtasks.tiling`; this module wires it to the commands: the
switches read from the config (:func:`tiling_from`), images kept at their native resolution
(:func:`without_resize`, :func:`native_loader`, :func:`native_test_data`), the
:class:`TiledPredictor` that ``predict`` runs (and ``evaluate``'s plots: its raw outputs are the
task's, detections padded by :func:`padded_detections`), and the test scores ``evaluate``
reports with tiles on (:func:`tiled_task`, :func:`tiled_detection_metrics`). With ``tta=``,
each window's views are merged before the windows are (see :class:`TiledPredictor`).
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import albumentations as A
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch.utils.data import DataLoader

from cvtasks.cli.common import TrainedModel
from cvtasks.cli.inputs import ImageFiles, collate
from cvtasks.inference import Predictor
from cvtasks.metrics.detection import CocoMeanAveragePrecision
from cvtasks.tasks.base import TaskModule
from cvtasks.tasks.detection import LOGGED
from cvtasks.tiling import (
    TILED_TASKS,
    Tiling,
    make_tiling,
    tiled_detections,
    tiled_log_probabilities,
)

log = logging.getLogger(__name__)

#: the target kind of each task tiling serves: blended maps, or merged boxes
TILED_KINDS = {"mask": "segmentation", "objects": "detection"}
#: pipeline steps that change the image's size (what tiling leaves out)
RESIZING = (A.Resize, A.CenterCrop, A.LongestMaxSize, A.SmallestMaxSize, A.PadIfNeeded)


def tiling_from(cfg: DictConfig, task: TaskModule, task_name: str) -> Tiling | None:
    """The command's tiling (``tile``, ``overlap``, ``tile_blend``, ``tile_batch``), or ``None``
    when ``tile`` is null.

    Raises:
        ValueError: one line: a bad value, or a task whose outputs cannot be tiled.
    """
    tile = cfg.get("tile")
    if tile is None:
        return None
    if getattr(task, "target_kind", None) not in TILED_KINDS:
        raise ValueError(
            f"tile= serves the dense tasks ({', '.join(TILED_TASKS)}), not {task_name}: "
            "drop tile= for this checkpoint"
        )
    if isinstance(tile, ListConfig):
        tile = OmegaConf.to_container(tile)
    return make_tiling(
        tile, cfg.get("overlap", 0.25), cfg.get("tile_blend", "gaussian"), cfg.get("tile_batch", 8)
    )


def without_resize(pipeline: A.Compose) -> A.Compose:
    """A copy of an evaluation pipeline whose resizing and cropping steps never run.

    Normalization, gray conversion and the tensor conversion stay; so do the pipeline's box and
    point processors, which then carry the targets through unchanged.
    """
    native = copy.deepcopy(pipeline)
    for step in native.transforms:
        if isinstance(step, RESIZING):
            step.p = 0.0
    return native


def native_loader(files: list[Path], model: TrainedModel) -> DataLoader:
    """The files one at a time (sizes differ), normalized as in training but not resized."""
    return DataLoader(
        ImageFiles(files, without_resize(model.transform())), batch_size=1, collate_fn=collate
    )


def native_test_data(datamodule: pl.LightningDataModule) -> pl.LightningDataModule:
    """The test split at each image's native size, one image per batch (sizes differ)."""
    dataset = datamodule.test_dataset
    inner = getattr(dataset, "dataset", dataset)  # under a RemappedTargets
    inner.transform = without_resize(inner.transform)
    datamodule.batch_size = 1
    return datamodule


class TiledPredictor:
    """A :class:`~cvtasks.inference.Predictor` run over windows of each image.

    With ``tta=`` on the predictor, every window goes through the augmented network: the task
    merges the window's views (:mod:`cvtasks.tta`) before the windows are blended or merged.

    Args:
        predictor: the inference path of the trained task (folded, device, precision, ``tta``).
        tiling: window size, overlap, blend and windows per call.
    """

    # Test-time augmentation runs per window, not on the whole tiled image: the window is the
    # network's input, so flip and flip_scale mean what they mean without tiles (scales are of
    # the training size), every task's tta_merge serves unchanged, and it costs what mirroring
    # the whole image would (each window once per view) without a second image-sized map. Where
    # the window grid is mirror-symmetric ((size - tile) a multiple of the stride) the two agree:
    # segmentation's blended probabilities are the mean of the image's tiled ones and its mirror
    # image's, mirrored back; detections of the mirror image are the mirrored detections.

    def __init__(self, predictor: Predictor, tiling: Tiling) -> None:
        self.predictor = predictor
        self.task = predictor.task
        self.device = predictor.device
        self.tiling = tiling
        self.kind = TILED_KINDS[self.task.target_kind]

    def forward(self, images: torch.Tensor) -> Any:
        """Raw outputs over windows of ``images`` at any size, in the form the task decodes.

        Segmentation: the tiled log-probabilities ``[B, K, H, W]``. Detection: each image's
        merged detections, padded as ``{"detections": (boxes, scores, labels)}``, the form the
        task's ``decode`` reads (see :func:`padded_detections`), so that evaluation reports draw
        their charts and pictures from the tiled detections.
        """
        if self.kind == "detection":
            found = [self.detections(images[k : k + 1]) for k in range(images.shape[0])]
            return {"detections": padded_detections(found, int(self.task.max_detections))}
        images = images.to(self.device)
        with torch.inference_mode():
            return tiled_log_probabilities(self.predictor.forward, images, self.tiling)

    def _detect(self, windows: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return self.task.decode(self.predictor.forward(windows))

    def detections(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Detection: one image's ``[1, C, H, W]`` merged detections, in its pixels."""
        with torch.inference_mode():
            return tiled_detections(
                self._detect,
                image.to(self.device),
                self.tiling,
                nms_iou=float(self.task.nms_iou),
                max_detections=int(self.task.max_detections),
            )

    def predict(self, batch: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Per-image predictions of a batch of images at their native size, as the task's
        ``predict_outputs`` gives them (masks, boxes in pixels of each image)."""
        if self.kind == "segmentation":
            logits = self.forward(batch["image"])
            return self.task.predict_outputs(logits, dict(batch))
        results = []
        for k in range(batch["image"].shape[0]):
            found = self.detections(batch["image"][k : k + 1])
            result: dict[str, Any] = {"detections": self.task.detection_records(found)}
            if "index" in batch:
                result["index"] = int(batch["index"][k])
            results.append(result)
        return results


def padded_detections(
    found: list[dict[str, torch.Tensor]], slots: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image detections in the padded form of the detection task's raw decoding.

    Args:
        found: per image ``{"boxes": [D_i, 4], "scores": [D_i], "labels": [D_i]}``, best first.
        slots: ``D``, detections per image (the task's ``max_detections``); extra ones dropped.

    Returns:
        ``boxes float[B, D, 4]``, ``scores float[B, D]`` (0 in empty slots) and ``labels
        int64[B, D]`` (-1 in empty slots), as :func:`cvtasks.ops.centernet.decode` gives them.
    """
    boxes = torch.zeros(len(found), slots, 4)
    scores = torch.zeros(len(found), slots)
    labels = torch.full((len(found), slots), -1, dtype=torch.long)
    for k, image in enumerate(found):
        n = min(len(image["scores"]), slots)
        boxes[k, :n] = image["boxes"][:n].float().cpu()
        scores[k, :n] = image["scores"][:n].float().cpu()
        labels[k, :n] = image["labels"][:n].long().cpu()
    return boxes, scores, labels


def tiled_task(task: TaskModule, tiling: Tiling) -> TaskModule:
    """A copy of a segmentation task whose forward runs over windows, for its own test loop
    (loss, metrics and reports then come at each image's native size)."""
    tiled = copy.deepcopy(task)
    forward = tiled.forward  # the copy's own network, on whatever device the loop puts it

    def windows_forward(images: torch.Tensor) -> torch.Tensor:
        return tiled_log_probabilities(forward, images, tiling)

    tiled.forward = windows_forward  # type: ignore[method-assign]
    return tiled


def tiled_detection_metrics(
    predictor: TiledPredictor, datamodule: pl.LightningDataModule, limit: float | int | None
) -> tuple[dict[str, float], int, dict[str, Any]]:
    """COCO mAP of tiled detections on the native-size test split.

    Args:
        predictor: the tiled inference path.
        datamodule: the test data, from :func:`native_test_data`.
        limit: ``trainer.limit_test_batches`` (a count, a fraction of the batches, or ``None``).

    Returns:
        ``test/map``, ``test/map50``, ``test/map75``, ``test/mar100`` and ``test/ap/<class>``;
        the batches scored; ``{"ap_per_class": ...}``.
    """
    task = predictor.task
    loader = datamodule.test_dataloader()
    count = len(loader)
    if isinstance(limit, float):
        count = int(count * limit)
    elif isinstance(limit, int):
        count = min(count, limit)
    metric = CocoMeanAveragePrecision()
    for batch in itertools.islice(loader, count):
        crowd = batch.get("crowd")
        for k in range(batch["image"].shape[0]):
            found = predictor.detections(batch["image"][k : k + 1])
            truth = {
                "boxes": batch["boxes"][k].float(),
                "labels": batch["labels"][k].long(),
                "iscrowd": crowd[k].bool() if crowd is not None else no_crowd(batch, k),
            }
            metric.update([found], [truth])
    results = metric.compute()
    metrics = {f"test/{name}": float(results[key]) for name, key in LOGGED.items()}
    per_class: dict[str, float | None] = {name: None for name in task.class_names}
    classes = results["classes"].reshape(-1).tolist()
    for label, ap in zip(classes, results["map_per_class"].reshape(-1).tolist()):
        if 0 <= label < task.num_classes and ap >= 0:  # -1: no ground truth of the class
            per_class[task.class_names[label]] = ap
            metrics[f"test/ap/{task.class_names[label]}"] = float(ap)
    return dict(sorted(metrics.items())), count, {"ap_per_class": per_class}


def no_crowd(batch: Mapping[str, Any], k: int) -> torch.Tensor:
    """No crowd flags: a reader that gives none marks no box as a crowd."""
    return torch.zeros(len(batch["labels"][k]), dtype=torch.bool)
