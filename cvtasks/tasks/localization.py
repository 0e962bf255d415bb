"""Single-object localization and classification (seed 001 §6.6, "Object Localization").

Each image holds one object of ``C`` classes or *nothing*. The head scores ``C + 1`` classes
(label 0 is *nothing*) and predicts one box ``(cx, cy, w, h)`` normalized to the image; the loss
is cross-entropy + gamma * 1[object] * box loss (:mod:`cvtasks.losses.localization`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from cvtasks.losses.localization import LocalizationLoss
from cvtasks.metrics.localization import LocalizationAccuracy, MeanBoxIoU
from cvtasks.ops.boxes import cxcywh_to_xyxy
from cvtasks.registry import TASKS
from cvtasks.tasks.base import TaskModule, class_names_for
from cvtasks.tasks.localization_report import LocalizationReport, LocalizationView

NOTHING = "nothing"


@TASKS.register("localization")
class LocalizationTask(TaskModule):
    """Classify the one object of an image (or *nothing*) and regress its box.

    Metrics, per split: ``acc`` (class accuracy over the ``C + 1`` classes, *nothing*
    included), ``miou`` (mean IoU over the images that hold an object) and ``loc_acc`` (right
    class and, for an object, IoU >= ``iou_threshold``); the run monitors ``val/loc_acc``.

    Args:
        backbone: backbone module or config (see :class:`TaskModule`).
        num_classes: object classes ``C``, without *nothing* (from the dataset).
        head: head config, ``{"name": "localization" | "localization_fc", ...}``.
        loss: :class:`~cvtasks.losses.localization.LocalizationLoss` options: ``gamma``,
            ``box_loss`` (mse | smooth_l1 | giou), ``smooth_l1_beta``, ``label_smoothing``.
        class_names: names of the ``C`` object classes, for predictions.
        iou_threshold: the least IoU that ``loc_acc`` counts as a found object.
        **kwargs: optimizer, scheduler, compile, channels_last (see :class:`TaskModule`).
    """

    monitor = "val/loc_acc"
    monitor_mode = "max"
    view = LocalizationView
    report = LocalizationReport
    target_kind = "box"

    def __init__(
        self,
        backbone: nn.Module | Mapping[str, Any],
        num_classes: int,
        head: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        iou_threshold: float = 0.5,
        **kwargs: Any,
    ) -> None:
        names = class_names_for(num_classes, class_names, first=1)
        self.num_classes = int(num_classes)
        self.iou_threshold = float(iou_threshold)
        super().__init__(
            backbone,
            head or {"name": "localization"},
            head_kwargs={"num_classes": self.num_classes},
            **kwargs,
        )
        self.save_hyperparameters(ignore=["backbone"] if isinstance(backbone, nn.Module) else None)
        self.criterion = LocalizationLoss(**dict(loss or {}))
        #: name of each predicted label: index 0 is *nothing*, 1..C the object classes.
        self.label_names = [NOTHING, *names]

    def make_metrics(self) -> MetricCollection:
        """``acc`` over C + 1 classes, ``miou`` over object images, ``loc_acc``."""
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes=self.num_classes + 1, average="micro"),
                "miou": MeanBoxIoU(),
                "loc_acc": LocalizationAccuracy(iou_threshold=self.iou_threshold),
            }
        )

    def compute_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """Seed 001's CE + gamma * 1[object] * box loss against ``label`` and ``box``."""
        parts = self.criterion(outputs["logits"], outputs["box"], batch["label"], batch["box"])
        self.loss_terms = {"loss_cls": parts.classification, "loss_box": parts.box}
        return parts.total

    def update_metrics(
        self, metrics: MetricCollection, outputs: dict[str, torch.Tensor], batch: dict[str, Any]
    ) -> None:
        """Feed scores, boxes and targets; each metric takes the arguments it names."""
        metrics.update(
            preds=outputs["logits"].detach().float(),
            target=batch["label"],
            pred_box=outputs["box"].detach().float(),
            target_box=batch["box"],
            label=batch["label"],
        )

    def predict_outputs(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Per image: ``label``, ``class_name``, ``probability``, ``p_nothing`` and ``box``.

        ``box`` is ``[x_min, y_min, x_max, y_max]`` in pixels of the original image (from
        ``batch["orig_size"]``, ``(height, width)``; the network input's size when absent),
        clipped to the image; ``None`` when the prediction is *nothing*. With ``batch["index"]``
        the result also carries ``index``, the sample's position in its dataset.
        """
        probs = outputs["logits"].detach().float().softmax(dim=1)
        top_p, top_i = probs.max(dim=1)
        boxes = cxcywh_to_xyxy(outputs["box"].detach().float()).clamp(0.0, 1.0)
        if "orig_size" in batch:
            sizes = batch["orig_size"].to(boxes.device).float()
        else:
            sizes = torch.tensor(batch["image"].shape[-2:], device=boxes.device).float()
            sizes = sizes.expand(boxes.shape[0], 2)
        scale = torch.stack([sizes[:, 1], sizes[:, 0], sizes[:, 1], sizes[:, 0]], dim=1)
        pixels = boxes * scale
        results = []
        for k in range(probs.shape[0]):
            label = int(top_i[k])
            result: dict[str, Any] = {
                "label": label,
                "class_name": self.label_names[label],
                "probability": float(top_p[k]),
                "p_nothing": float(probs[k, 0]),
                "box": None if label == 0 else [round(float(v), 2) for v in pixels[k]],
            }
            if "index" in batch:  # the sample's index in its split: dataset.samples[index].path
                result["index"] = int(batch["index"][k])
            results.append(result)
        return results
