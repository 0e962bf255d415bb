"""Semantic segmentation: a class for every pixel (seed 001 §6.6, Fig 6.16 (d)).

The network's output has "width and height dimensions the same as the input image, and a depth
dimension which is the number of classes" (seed 001 §6.6): per-pixel logits from a
segmentation head (``fcn`` or ``unet``). Masks mark pixels to ignore with 255.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
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

from cvtasks import tta
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


def class_map(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel ``probabilities [N, C, H, W]`` (softmax) and ``classes [N, H, W]`` (their
    arg-max): what ``predict`` answers and exports decode to. Traceable."""
    probs = logits.float().softmax(dim=1)
    return probs, probs.argmax(dim=1)


def scored_pairs(
    logits: torch.Tensor, batch: Mapping[str, Any]
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(predicted classes, mask)`` pairs of a batch, at the size its masks are scored at.

    With ``batch["orig_mask"]`` (one ``[H, W]`` mask per image, as read from its file): one
    pair per image, its logits resized to the mask's size (bilinear) before the arg-max, each
    ``[1, H, W]``. Without it: one pair for the batch, the arg-max at the logits' size against
    ``batch["mask"]``.
    """
    originals = batch.get("orig_mask")
    if originals is None:
        yield _classes(logits), batch["mask"]
        return
    for k, mask in enumerate(originals):
        resized = _resize(logits[k : k + 1].detach().float(), mask.shape[-2:])
        yield _classes(resized), mask.reshape(1, *mask.shape[-2:]).long()


@TASKS.register("segmentation")
class SegmentationTask(TaskModule):
    """Per-pixel classification: mean IoU, pixel accuracy and Dice; per-class IoU in reports.

    Metrics ignore pixels whose mask value is 255 and are computed over the whole split (one
    confusion matrix per epoch, not a mean over batches). ``miou`` and ``dice`` average over the
    classes that occur in the target or the prediction; ``dice`` is the per-pixel F1 score, which
    is the Dice coefficient ``2|P∩T| / (|P| + |T|)``.

    Where a pixel is scored: a batch that carries ``orig_mask`` (each image's mask as read from
    its file, a list since sizes differ: the test split of the segmentation readers) is scored
    at each image's original size, as ``predict`` answers and as MMSegmentation scores: the
    logits resized back to the image's ``(height, width)`` (bilinear), then the arg-max, against
    the untouched mask. Other batches (training and validation) are scored at the training size
    against the resized mask. ``test/miou_train_size`` keeps the training-size mean IoU of the
    test split beside the original-size ``test/miou``.

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
    tta_modes = ("flip", "flip_scale")
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
        self.test_miou_train_size = MulticlassJaccardIndex(
            num_classes=self.num_classes,
            ignore_index=IGNORE_INDEX,
            average="macro",
            validate_args=False,
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

    def tta_merge(
        self, outputs: list[torch.Tensor], views: Sequence[tta.View], size: tuple[int, int]
    ) -> torch.Tensor:
        """Each view's logits resized to ``size`` and mirrored back, their per-pixel softmax
        probabilities averaged; returned as logits (their logarithm) ``[B, C, H, W]``."""
        probs = []
        for logits, view in zip(outputs, views):
            logits = _resize(logits.float(), size)
            probs.append((logits.flip(-1) if view.flip else logits).softmax(dim=1))
        return tta.softmax_logits(tta.mean_probabilities(probs))

    def compute_loss(self, outputs: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The configured loss of the logits against ``batch["mask"]`` (255 ignored)."""
        return self.criterion(outputs, batch["mask"])

    def update_metrics(
        self, metrics: MetricCollection, outputs: torch.Tensor, batch: dict[str, Any]
    ) -> None:
        """Metrics of the per-pixel arg-max against the mask (see :func:`scored_pairs`: at each
        image's original size when the batch carries ``orig_mask``).

        The test split also fills the pixel confusion matrix from the same pairs, and the
        training-size mean IoU from the logits and ``batch["mask"]``.
        """
        test = metrics is self.test_metrics
        for classes, mask in scored_pairs(outputs, batch):
            metrics.update(classes, mask)
            if test:
                self.test_confusion.update(classes, mask)
        if test:
            self.test_miou_train_size.update(_classes(outputs), batch["mask"])

    def after_step(self, outputs: torch.Tensor, batch: dict[str, Any], split: str) -> None:
        """Log ``test/miou_train_size`` on the test split (computed once, at the epoch's end)."""
        if split == "test":
            self.log(
                "test/miou_train_size", self.test_miou_train_size, on_step=False, on_epoch=True
            )

    def on_test_epoch_start(self) -> None:
        """Start a fresh confusion matrix for each test run."""
        self.test_confusion.reset()
        self.test_miou_train_size.reset()

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

    def decoded_outputs(
        self, outputs: torch.Tensor, image_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """The class map ``classes [N, H, W]`` and ``probabilities [N, C, H, W]`` at the input
        size (see :func:`class_map`)."""
        probs, classes = class_map(outputs)
        return {"classes": classes, "probabilities": probs}

    def update_decoded_metrics(
        self, metrics: MetricCollection, outputs: Mapping[str, torch.Tensor], batch: dict[str, Any]
    ) -> None:
        """Decoded: the class map against ``batch["mask"]``, both at the input size."""
        metrics.update(outputs["classes"], batch["mask"])

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
            probs, classes = class_map(_resize(logits[k : k + 1], size))
            result: dict[str, Any] = {"mask": classes[0].cpu(), "size": tuple(size)}
            if self.predict_probabilities:
                result["probabilities"] = probs[0].cpu()
            if "path" in batch:
                result["path"] = str(batch["path"][k])
            results.append(result)
        return results
