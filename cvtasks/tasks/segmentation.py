"""Semantic segmentation: a class for every pixel (seed 001 §6.6, Fig 6.16 (d)).

The network's output has "width and height dimensions the same as the input image, and a depth
dimension which is the number of classes" (seed 001 §6.6): per-pixel logits from a
segmentation head (``fcn`` or ``unet``). Masks mark pixels to ignore with 255.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassJaccardIndex,
)

from cvtasks.losses.segmentation import SegmentationLoss
from cvtasks.metrics import ConfusionScore
from cvtasks.ops.masks import IGNORE_INDEX
from cvtasks.registry import TASKS
from cvtasks.tasks.base import TaskModule, class_names_for
from cvtasks.tasks.segmentation_report import SegmentationReport, SegmentationView


def _resize(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def _classes(logits: torch.Tensor) -> torch.Tensor:
    # max(dim).indices is the arg-max; on CPU it is several times faster than argmax(dim=1)
    # over a channels-first tensor, and it runs on every training step for the metrics.
    return logits.detach().max(dim=1).indices


@TASKS.register("segmentation")
class SegmentationTask(TaskModule):
    """Per-pixel classification: mean IoU, pixel accuracy and Dice; per-class IoU in reports.

    Metrics ignore pixels whose mask value is 255 and are computed over the whole split (one
    confusion matrix per epoch, not a mean over batches). ``miou`` and ``dice`` average over the
    classes that occur in the target or the prediction; ``dice`` is the per-pixel F1 score, which
    is the Dice coefficient ``2|P∩T| / (|P| + |T|)``.

    Args:
        backbone: backbone module or config (see :class:`TaskModule`).
        num_classes: number of classes, background included (from the dataset).
        head: head config, ``{"name": "unet"|"fcn", ...}``.
        loss: :class:`~cvtasks.losses.segmentation.SegmentationLoss` options: ``name``
            (``ce``, ``dice``, ``ce_dice``), ``class_weights``, ``ce_weight``, ``dice_weight``.
        class_names: names of the classes, for reports.
        predict_probabilities: add per-class probabilities ``[C, H, W]`` to each prediction.
        **kwargs: optimizer, scheduler, compile, channels_last (see :class:`TaskModule`).
    """

    monitor = "val/miou"
    monitor_mode = "max"
    view = SegmentationView
    report = SegmentationReport
    target_kind = "mask"
    #: per-pixel outputs: the input size must be divisible by the backbone's deepest reduction.
    dense_output = True

    def __init__(
        self,
        backbone: nn.Module | Mapping[str, Any],
        num_classes: int,
        head: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        predict_probabilities: bool = False,
        **kwargs: Any,
    ) -> None:
        names = class_names_for(num_classes, class_names)
        self.num_classes = int(num_classes)
        super().__init__(
            backbone,
            head or {"name": "unet"},
            head_kwargs={"num_classes": self.num_classes},
            **kwargs,
        )
        self.save_hyperparameters(ignore=["backbone"] if isinstance(backbone, nn.Module) else None)
        self.criterion = SegmentationLoss(num_classes=self.num_classes, **dict(loss or {}))
        self.class_names = names
        self.predict_probabilities = bool(predict_probabilities)
        self.test_confusion = MulticlassConfusionMatrix(
            num_classes=self.num_classes, ignore_index=IGNORE_INDEX, validate_args=False
        )

    def make_metrics(self) -> MetricCollection:
        """Mean IoU (``miou``), pixel accuracy (``pixel_acc``) and mean Dice (``dice``)."""
        # Masks were checked when read (values below num_classes or 255), so the metrics skip
        # their own per-batch scan of the values.
        common = {
            "num_classes": self.num_classes,
            "ignore_index": IGNORE_INDEX,
            "validate_args": False,
        }
        return MetricCollection(
            {
                "miou": MulticlassJaccardIndex(average="macro", **common),
                "pixel_acc": MulticlassAccuracy(average="micro", **common),
                "dice": MulticlassF1Score(average="macro", **common),
            }
        )

    def make_train_metrics(self) -> MetricCollection:
        """The same scores, counted without waiting for the device (no boolean indexing)."""
        return MetricCollection(
            {
                name: ConfusionScore(self.num_classes, score, ignore_index=IGNORE_INDEX)
                for name, score in (("miou", "iou"), ("pixel_acc", "accuracy"), ("dice", "f1"))
            }
        )

    def forward(self, images: torch.Tensor) -> Any:
        """Per-pixel logits ``[B, num_classes, H, W]`` at the size of ``images``."""
        outputs = super().forward(images)
        if isinstance(outputs, torch.Tensor):  # a head's size can be off when H, W do not divide
            outputs = _resize(outputs, images.shape[-2:])
        return outputs

    def compute_loss(self, outputs: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The configured loss of the logits against ``batch["mask"]`` (255 ignored)."""
        return self.criterion(outputs, batch["mask"])

    def update_metrics(
        self, metrics: MetricCollection, outputs: torch.Tensor, batch: dict[str, Any]
    ) -> None:
        """Metrics of the per-pixel arg-max against the mask."""
        metrics.update(_classes(outputs), batch["mask"])

    def after_step(self, outputs: torch.Tensor, batch: dict[str, Any], split: str) -> None:
        """Accumulate the pixel confusion matrix on the test split."""
        if split == "test":
            self.test_confusion.update(_classes(outputs), batch["mask"])

    def on_test_epoch_start(self) -> None:
        """Start a fresh confusion matrix for each test run."""
        self.test_confusion.reset()

    def on_test_epoch_end(self) -> None:
        """Store per-class IoU and the pixel confusion matrix (rows true, columns predicted).

        A class absent from both the masks and the predictions has no IoU (``None``).
        """
        matrix = self.test_confusion.compute().long()
        hits = matrix.diag()
        union = matrix.sum(0) + matrix.sum(1) - hits
        self.test_reports["per_class_iou"] = {
            name: (float(h) / float(u) if u > 0 else None)
            for name, h, u in zip(self.class_names, hits.tolist(), union.tolist())
        }
        self.test_reports["confusion_matrix"] = {
            "classes": self.class_names,
            "matrix": matrix.tolist(),
        }

    def predict_outputs(self, outputs: torch.Tensor, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per image: ``mask`` (class indices ``[H, W]`` at the image's own size, from
        ``batch["orig_size"]``), ``size`` ``(H, W)``, ``path`` when known, and
        ``probabilities`` ``[num_classes, H, W]`` with ``predict_probabilities``.
        """
        logits = outputs.detach().float()
        sizes = batch.get("orig_size")
        results = []
        for k in range(logits.shape[0]):
            size = tuple(int(s) for s in sizes[k]) if sizes is not None else logits.shape[-2:]
            probs = _resize(logits[k : k + 1], size).softmax(dim=1)[0]
            result: dict[str, Any] = {"mask": probs.argmax(dim=0).cpu(), "size": tuple(size)}
            if self.predict_probabilities:
                result["probabilities"] = probs.cpu()
            if "path" in batch:
                result["path"] = str(batch["path"][k])
            results.append(result)
        return results
