"""Single-object localization metrics that torchmetrics lacks.

torchmetrics' detection IoU matches lists of boxes per image; with one box (or none) per image
the two quantities the task reports are simpler sums, kept here as ``torchmetrics.Metric``
states so that they sync across processes:

* :class:`MeanBoxIoU`: the IoU of the predicted and the true box, averaged over the images that
  hold an object (whatever class was predicted);
* :class:`LocalizationAccuracy`: the share of images whose prediction is right: the right class,
  and for an image that holds an object a box with IoU >= ``iou_threshold`` (0.5, the usual
  PASCAL VOC criterion). An image with nothing in it is right when *nothing* is predicted.

Classification accuracy over the ``C + 1`` classes (*nothing* included) is torchmetrics'
``MulticlassAccuracy``.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric

from cvtasks.ops.boxes import cxcywh_to_xyxy, paired_box_iou

# States are replaced, not updated in place (``x = x + y``), as torchmetrics' own metrics do: a
# state reset inside ``torch.inference_mode`` (Lightning's validate/test) is an inference tensor
# that refuses in-place updates once training resumes.


def _check(pred_box: torch.Tensor, target_box: torch.Tensor, label: torch.Tensor) -> None:
    if pred_box.shape != target_box.shape or pred_box.ndim != 2 or pred_box.shape[-1] != 4:
        raise ValueError(
            f"boxes must both be [B, 4], got {tuple(pred_box.shape)} and {tuple(target_box.shape)}"
        )
    if label.shape != pred_box.shape[:1]:
        raise ValueError(
            f"labels must be [B] for {pred_box.shape[0]} boxes, got {tuple(label.shape)}"
        )


class MeanBoxIoU(Metric):
    """Mean IoU of predicted and true ``cxcywh`` boxes over the images that hold an object.

    ``update(pred_box, target_box, label)`` with ``label == 0`` meaning *nothing*; those images
    are left out. ``compute()`` is 0 before any image with an object was seen.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state(
            "iou_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred_box: torch.Tensor, target_box: torch.Tensor, label: torch.Tensor) -> None:
        """Add a batch: ``float[B, 4]`` predicted and true boxes, ``int64[B]`` true labels."""
        _check(pred_box, target_box, label)
        has_object = label > 0
        iou = paired_box_iou(cxcywh_to_xyxy(pred_box.float()), cxcywh_to_xyxy(target_box.float()))
        # a mask, not boolean indexing (no host-device sync); *nothing* rows may be NaN
        self.iou_sum = self.iou_sum + torch.where(has_object, iou, 0.0).sum().double()
        self.count = self.count + has_object.sum()

    def compute(self) -> torch.Tensor:
        """The mean IoU (0 when no image held an object)."""
        return (self.iou_sum / self.count.clamp(min=1)).float()


class LocalizationAccuracy(Metric):
    """Share of images with the right class and, when there is an object, IoU >= ``iou_threshold``.

    ``update(logits_or_pred_label, pred_box, target_box, label)``: the first argument is either
    ``float[B, C + 1]`` scores (their arg-max is the predicted class) or ``int64[B]`` labels.

    Args:
        iou_threshold: the least IoU that counts as found (0.5, as PASCAL VOC).
        **kwargs: ``torchmetrics.Metric`` options.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, iou_threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        self.iou_threshold = float(iou_threshold)
        self.add_state("correct", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(
        self,
        preds: torch.Tensor,
        pred_box: torch.Tensor,
        target_box: torch.Tensor,
        label: torch.Tensor,
    ) -> None:
        """Add a batch (see the class docstring for the argument shapes)."""
        _check(pred_box, target_box, label)
        pred_label = preds.argmax(dim=1) if preds.is_floating_point() else preds
        iou = paired_box_iou(cxcywh_to_xyxy(pred_box.float()), cxcywh_to_xyxy(target_box.float()))
        found = (label == 0) | (iou >= self.iou_threshold)
        self.correct = self.correct + ((pred_label == label) & found).sum()
        self.total = self.total + label.shape[0]

    def compute(self) -> torch.Tensor:
        """The share of right images (0 before any update)."""
        return self.correct.float() / self.total.clamp(min=1).float()
