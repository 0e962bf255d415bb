"""The CenterNet / TTFNet detection loss: penalty-reduced focal loss on heatmaps + GIoU on boxes.

* Heatmap (CornerNet, Law & Deng 2018, eq. 1; CenterNet): with ``p`` the predicted probability
  and ``y`` the Gaussian target of a cell and class,

      L = -1/N · sum of  (1 - p)^alpha · log p                    where y = 1,
                         (1 - y)^beta · p^alpha · log(1 - p)      elsewhere,

  ``N`` the number of objects (cells where y = 1), ``alpha = 2``, ``beta = 4``. Cells of crowd
  regions (the ``ignore`` target) count neither way.
* Box (TTFNet, Liu et al. 2020, eq. 4): at every cell of an object's regression area, the GIoU
  loss between the box the cell predicts and the object's box, weighted by the cell's
  ``box_weight`` target and divided by the sum of those weights. Optionally an L1 term on the
  box corners divided by the target box's width and height (scale-free, like GIoU).

Images without objects give heatmap negatives only; a batch without any object gives a finite
loss whose box term is 0 (still connected to the graph).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cvtasks.ops.boxes import giou_loss
from cvtasks.ops.centernet import DetectionTargets, cell_centres, distances_to_boxes

DETECTION_BOX_LOSSES = ("giou", "l1", "giou_l1")


class DetectionLossParts(NamedTuple):
    """The loss and its two terms (for logging).

    Attributes:
        total: ``heatmap_weight · heatmap + box_weight · box``.
        heatmap: the focal loss per object.
        box: the weighted mean box loss (GIoU, L1 or GIoU + ``l1_weight`` · L1).
    """

    total: torch.Tensor
    heatmap: torch.Tensor
    box: torch.Tensor


def heatmap_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore: torch.Tensor | None = None,
    alpha: float = 2.0,
    beta: float = 4.0,
) -> torch.Tensor:
    """The penalty-reduced pixel-wise focal loss of CornerNet eq. 1, summed over objects' count.

    Args:
        logits: ``float[B, C, h, w]`` heatmap logits.
        target: ``float[B, C, h, w]`` in [0, 1], exactly 1 at object centres.
        ignore: ``bool[B, C, h, w]`` cells left out, or ``None``.
        alpha: the focusing exponent.
        beta: the exponent of the penalty reduction near centres.

    Returns:
        A scalar: the sum over cells divided by the number of positive cells (at least 1).
    """
    logits, target = logits.float(), target.float()
    # log p and log(1 - p) from the logits: exact where a clamped sigmoid would saturate.
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = logits.sigmoid()
    positive = target.eq(1)
    pos_loss = (1 - p).pow(alpha) * log_p
    neg_loss = (1 - target).pow(beta) * p.pow(alpha) * log_not_p
    per_cell = torch.where(positive, pos_loss, neg_loss)
    if ignore is not None:
        per_cell = per_cell * ~ignore
        positive = positive & ~ignore
    return -per_cell.sum() / positive.sum().clamp(min=1)


def _stand_in_boxes(height: int, width: int, stride: int, device: torch.device) -> torch.Tensor:
    """``[1, 4, h, w]``: each cell's own square, a harmless target where no object is."""
    xs, ys = cell_centres(height, width, stride, device)
    half = stride / 2
    xs, ys = xs.view(1, width).expand(height, -1), ys.view(height, 1).expand(-1, width)
    return torch.stack([xs - half, ys - half, xs + half, ys + half])[None]


def box_regression_loss(
    distances: torch.Tensor,
    targets: DetectionTargets,
    stride: int,
    kind: str = "giou",
    l1_weight: float = 1.0,
) -> torch.Tensor:
    """The weighted mean box loss over the cells of objects' regression areas.

    Args:
        distances: ``float[B, 4, h, w]`` predicted ``(left, top, right, bottom)`` in pixels.
        targets: from :func:`cvtasks.ops.centernet.detection_targets`.
        stride: input pixels per cell.
        kind: ``"giou"``, ``"l1"`` or ``"giou_l1"`` (GIoU + ``l1_weight`` · L1).
        l1_weight: weight of the L1 term in ``"giou_l1"``.

    Returns:
        A scalar; 0 (connected to ``distances``) when no cell has weight.
    """
    if kind not in DETECTION_BOX_LOSSES:
        raise ValueError(f"box loss must be one of {DETECTION_BOX_LOSSES}, got {kind!r}")
    height, width = distances.shape[-2:]
    pred = distances_to_boxes(distances.float(), stride)
    weight = targets.box_weight.float()
    # Masks, not indexing: cells without an object get a stand-in target, so their (zero
    # weighted) loss and gradient stay finite and the host never waits for a data-dependent size.
    stand_in = _stand_in_boxes(int(height), int(width), stride, distances.device)
    target = torch.where(weight > 0, targets.box.float(), stand_in)
    pred, target = pred.permute(0, 2, 3, 1), target.permute(0, 2, 3, 1)  # [B, h, w, 4]
    per_cell = pred.new_zeros(pred.shape[:-1])
    if kind in ("giou", "giou_l1"):
        per_cell = per_cell + giou_loss(pred, target)
    if kind in ("l1", "giou_l1"):
        size = (target[..., 2:] - target[..., :2]).clamp(min=1.0).repeat(1, 1, 1, 2)
        l1 = ((pred - target).abs() / size).mean(dim=-1)
        per_cell = per_cell + (l1_weight if kind == "giou_l1" else 1.0) * l1
    weight = weight[:, 0]
    return (per_cell * weight).sum() / weight.sum().clamp(min=1e-6)


class DetectionLoss(nn.Module):
    """Focal heatmap loss + weighted GIoU/L1 box loss (see the module docstring).

    Args:
        heatmap_weight: weight of the heatmap term.
        box_weight: weight of the box term (TTFNet uses 5 with GIoU).
        box_loss: ``"giou"``, ``"l1"`` or ``"giou_l1"``.
        l1_weight: weight of the L1 term inside ``"giou_l1"``.
        focal_alpha: the focusing exponent alpha (2).
        focal_beta: the penalty-reduction exponent beta (4).
    """

    def __init__(
        self,
        heatmap_weight: float = 1.0,
        box_weight: float = 5.0,
        box_loss: str = "giou",
        l1_weight: float = 1.0,
        focal_alpha: float = 2.0,
        focal_beta: float = 4.0,
    ) -> None:
        super().__init__()
        if box_loss not in DETECTION_BOX_LOSSES:
            raise ValueError(
                f"task.loss.box_loss must be one of {DETECTION_BOX_LOSSES}, got {box_loss!r}"
            )
        for key, value in (
            ("heatmap_weight", heatmap_weight),
            ("box_weight", box_weight),
            ("l1_weight", l1_weight),
            ("focal_alpha", focal_alpha),
            ("focal_beta", focal_beta),
        ):
            if value < 0:
                raise ValueError(f"task.loss.{key} must be >= 0, got {value}")
        self.heatmap_weight = float(heatmap_weight)
        self.box_weight = float(box_weight)
        self.box_loss = box_loss
        self.l1_weight = float(l1_weight)
        self.focal_alpha = float(focal_alpha)
        self.focal_beta = float(focal_beta)

    def forward(
        self, outputs: Mapping[str, torch.Tensor], targets: DetectionTargets, stride: int
    ) -> DetectionLossParts:
        """The loss of a batch.

        Args:
            outputs: the ``centernet`` head's ``{"heatmap": logits, "box": ltrb distances}``.
            targets: :func:`cvtasks.ops.centernet.detection_targets` at the outputs' size.
            stride: the head's stride.
        """
        heatmap = heatmap_focal_loss(
            outputs["heatmap"], targets.heatmap, targets.ignore, self.focal_alpha, self.focal_beta
        )
        box = box_regression_loss(outputs["box"], targets, stride, self.box_loss, self.l1_weight)
        total = self.heatmap_weight * heatmap + self.box_weight * box
        return DetectionLossParts(total, heatmap, box)

    def extra_repr(self) -> str:
        return f"box_loss={self.box_loss!r}, box_weight={self.box_weight}"
