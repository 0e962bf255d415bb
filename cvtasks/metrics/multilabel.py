"""Mean average precision of multi-label classification over the classes that occur."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torchmetrics.classification import MultilabelAveragePrecision
from torchmetrics.utilities.data import dim_zero_cat


class PresentClassesAP(MultilabelAveragePrecision):
    """Average precision of each class (``per_class=True``), or their mean over the classes
    with at least one positive target.

    A class no image has has no precision-recall curve. torchmetrics scores it 0 and counts it
    in the macro mean, so one class missing from a small validation split pulls mAP down;
    here it is ``nan`` and left out of the mean, as PASCAL VOC and COCO leave absent classes out.
    Scores are kept exactly (``thresholds=None``).

    Args:
        num_labels: number of classes.
        per_class: return the vector of per-class APs instead of their mean.
        **kwargs: other ``torchmetrics.Metric`` options (``dist_sync_on_step``, ...).
    """

    def __init__(self, num_labels: int, per_class: bool = False, **kwargs: Any) -> None:
        super().__init__(num_labels=num_labels, average=None, thresholds=None, **kwargs)
        self.per_class = per_class

    def compute(self) -> torch.Tensor:
        """The per-class APs (``nan`` where a class has no positive) or their mean."""
        target = dim_zero_cat(self.target)
        with warnings.catch_warnings():  # torchmetrics warns of each absent class: handled here
            warnings.filterwarnings("ignore", message="No positive samples found")
            ap = super().compute().float()
        present = (target == 1).any(dim=0)
        ap = torch.where(present, ap, torch.full_like(ap, float("nan")))
        if self.per_class:
            return ap
        return ap[present].mean() if present.any() else ap.new_tensor(float("nan"))
