"""Scores of a confusion matrix that is accumulated without host-device synchronization.

torchmetrics' multiclass confusion matrix counts with ``torch.bincount`` (whose output size the
host must read from the device first) and drops ``ignore_index`` entries by boolean indexing
(whose output size the host must also wait for): on a GPU every training step that updates such
a metric stalls until the device has caught up. :class:`ConfusionScore` counts with
``index_add_`` into a fixed-size matrix instead, routing ignored and out-of-range labels to one
extra bin, so its updates only queue work. Its scores follow torchmetrics' definitions (which the
tests use as the oracle):

* ``accuracy``: correct / counted (micro, torchmetrics ``MulticlassAccuracy(average="micro")``);
* ``f1``: the mean over classes of ``2·TP / (2·TP + FP + FN)`` (``MulticlassF1Score(average=
  "macro")``; the Dice coefficient);
* ``iou``: the mean over classes of ``TP / (TP + FP + FN)`` (``MulticlassJaccardIndex(average=
  "macro")``).

Macro means leave out classes that neither occur nor are predicted (``TP + FP + FN = 0``), and
the mean IoU also an ``ignore_index`` that is a class, as torchmetrics does; they are 0 when no
class is left.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric

SCORES = ("accuracy", "f1", "iou")


class ConfusionScore(Metric):
    """One score of a multiclass confusion matrix, updated without waiting for the device.

    ``update(preds, target)``: ``preds`` are class indices of ``target``'s shape, or scores with
    one more dimension (``[B, C, ...]``, arg-max over ``C``); ``target`` holds class indices.

    Args:
        num_classes: ``C``.
        score: one of :data:`SCORES`.
        ignore_index: a target value that is not counted (e.g. 255 in segmentation masks).
        **kwargs: ``torchmetrics.Metric`` options.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self, num_classes: int, score: str, ignore_index: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.score = score
        self.ignore_index = ignore_index
        # row = target, column = prediction, flattened; the last bin collects what is not counted
        bins = self.num_classes**2 + 1
        self.add_state("counts", torch.zeros(bins, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Count a batch."""
        if preds.is_floating_point() or preds.ndim == target.ndim + 1:
            preds = preds.argmax(dim=1)
        if preds.shape != target.shape:
            raise ValueError(
                f"preds {tuple(preds.shape)} and target {tuple(target.shape)} must match"
            )
        preds, target = preds.reshape(-1).long(), target.reshape(-1).long()
        c = self.num_classes
        counted = (target >= 0) & (target < c) & (preds >= 0) & (preds < c)
        if self.ignore_index is not None:
            counted &= target != self.ignore_index
        index = torch.where(counted, target * c + preds, c * c)
        # Out of place: a state reset under inference mode may not be changed in place outside it.
        self.counts = self.counts.index_add(0, index, torch.ones_like(index))

    def compute(self) -> torch.Tensor:
        """The score over everything counted so far."""
        c = self.num_classes
        matrix = self.counts[: c * c].view(c, c).double()
        tp = matrix.diag()
        if self.score == "accuracy":
            return (tp.sum() / matrix.sum().clamp(min=1)).float()
        fp, fn = matrix.sum(0) - tp, matrix.sum(1) - tp
        if self.score == "f1":
            numerator, denominator = 2 * tp, 2 * tp + fp + fn
        else:
            numerator, denominator = tp, tp + fp + fn
        present = denominator > 0
        if self.score == "iou" and self.ignore_index is not None and 0 <= self.ignore_index < c:
            present[self.ignore_index] = False  # torchmetrics' Jaccard leaves that class out
        per_class = numerator / denominator.clamp(min=1)
        return (per_class[present].sum() / present.sum().clamp(min=1)).float()
