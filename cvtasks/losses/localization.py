"""The single-object localization loss of seed 001 §6.6: CE + gamma * 1[object] * box loss.

Seed 001 (§6.6, "Object Localization") writes the output as
``y_hat = (p_nothing, p_1, ..., p_C, y_x, y_y, y_h, y_w)`` and the loss of one observation as

    C_classification(theta; y_hat, y) + gamma * (1 - y_1) * C_localization(theta; y_hat, y),

with categorical cross-entropy for the first term, "a mean squared error ... or some variant,
applied to the four bounding box components" for the second, ``y_1 = 1`` exactly when the label
is *nothing* (so images without an object train the classifier only) and ``gamma = 1`` by default.
Here label 0 is *nothing* and the box is ``(cx, cy, w, h)`` normalized to the image.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cvtasks.ops.boxes import cxcywh_to_xyxy, giou_loss

BOX_LOSSES = ("mse", "smooth_l1", "giou")


class LocalizationLossParts(NamedTuple):
    """The loss and its two terms (for logging).

    Attributes:
        total: ``classification + gamma * box * (images with an object) / (all images)``, the
            batch mean of the seed's per-observation loss.
        classification: mean cross-entropy over every image.
        box: mean box loss over the images that hold an object (0 when none does).
    """

    total: torch.Tensor
    classification: torch.Tensor
    box: torch.Tensor


def box_regression_loss(
    pred: torch.Tensor, target: torch.Tensor, kind: str = "mse", beta: float = 0.05
) -> torch.Tensor:
    """Per-box loss between predicted and target ``cxcywh`` boxes.

    Args:
        pred: ``float[N, 4]`` predicted boxes.
        target: ``float[N, 4]`` target boxes.
        kind: ``"mse"`` (the seed's choice: mean of the 4 squared errors), ``"smooth_l1"`` (mean
            of the 4 Huber terms with threshold ``beta``) or ``"giou"`` (``1 - GIoU``).
        beta: where smooth-L1 turns from quadratic to linear, in normalized units.

    Returns:
        ``float[N]``.
    """
    if kind == "mse":
        return (pred - target).pow(2).mean(dim=-1)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target, reduction="none", beta=beta).mean(dim=-1)
    if kind == "giou":
        return giou_loss(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(target))
    raise ValueError(f"box loss must be one of {BOX_LOSSES}, got {kind!r}")


def localization_loss(
    logits: torch.Tensor,
    pred_box: torch.Tensor,
    label: torch.Tensor,
    target_box: torch.Tensor,
    gamma: float = 1.0,
    box_loss: str = "mse",
    smooth_l1_beta: float = 0.05,
    label_smoothing: float = 0.0,
) -> LocalizationLossParts:
    """Seed 001's localization loss, averaged over a batch.

    Args:
        logits: ``float[B, C + 1]`` class scores, index 0 meaning *nothing*.
        pred_box: ``float[B, 4]`` predicted ``(cx, cy, w, h)`` in [0, 1].
        label: ``int64[B]``, 0 for *nothing*, 1..C for an object class.
        target_box: ``float[B, 4]``; rows of *nothing* images are "do not care" and ignored.
        gamma: weight of the box term (seed: gamma > 0, 1 by default).
        box_loss: ``"mse"`` (seed), ``"smooth_l1"`` or ``"giou"``.
        smooth_l1_beta: the smooth-L1 threshold.
        label_smoothing: cross-entropy label smoothing in [0, 1).

    Returns:
        The total and its two terms, see :class:`LocalizationLossParts`.
    """
    classification = F.cross_entropy(logits.float(), label, label_smoothing=label_smoothing)
    has_object = label > 0
    # Masks instead of boolean indexing, whose output size is data-dependent and would make the
    # host wait for the device in every step. Rows of *nothing* get a harmless stand-in target
    # (the whole image) so their masked-out loss and its zero gradient stay finite.
    half = pred_box.new_full((target_box.shape[0], 2), 0.5)  # filled on the device: no copy
    stand_in = torch.cat([half, torch.ones_like(half)], dim=1)
    target = torch.where(has_object[:, None], target_box.to(pred_box.dtype), stand_in)
    per_box = box_regression_loss(pred_box.float(), target.float(), box_loss, smooth_l1_beta)
    count = has_object.sum()
    box = (per_box * has_object).sum() / count.clamp(min=1)  # 0, still connected, when none
    total = classification + gamma * box * (count / label.shape[0])
    return LocalizationLossParts(total, classification, box)


class LocalizationLoss(nn.Module):
    """:func:`localization_loss` with its settings fixed, as a module.

    Args:
        gamma: weight of the box term, > 0 (the seed's gamma; default 1).
        box_loss: ``"mse"`` (seed), ``"smooth_l1"`` or ``"giou"``.
        smooth_l1_beta: the smooth-L1 threshold, in normalized units.
        label_smoothing: cross-entropy label smoothing in [0, 1).
    """

    def __init__(
        self,
        gamma: float = 1.0,
        box_loss: str = "mse",
        smooth_l1_beta: float = 0.05,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"task.loss.box_loss must be one of {BOX_LOSSES}, got {box_loss!r}")
        if gamma <= 0:
            raise ValueError(f"task.loss.gamma must be > 0, got {gamma}")
        if smooth_l1_beta <= 0:
            raise ValueError(f"task.loss.smooth_l1_beta must be > 0, got {smooth_l1_beta}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"task.loss.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.gamma = float(gamma)
        self.box_loss = box_loss
        self.smooth_l1_beta = float(smooth_l1_beta)
        self.label_smoothing = float(label_smoothing)

    def forward(
        self,
        logits: torch.Tensor,
        pred_box: torch.Tensor,
        label: torch.Tensor,
        target_box: torch.Tensor,
    ) -> LocalizationLossParts:
        """See :func:`localization_loss`."""
        return localization_loss(
            logits,
            pred_box,
            label,
            target_box,
            gamma=self.gamma,
            box_loss=self.box_loss,
            smooth_l1_beta=self.smooth_l1_beta,
            label_smoothing=self.label_smoothing,
        )

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, box_loss={self.box_loss!r}"
