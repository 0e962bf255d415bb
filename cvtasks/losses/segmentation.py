"""Segmentation losses: per-pixel cross-entropy, soft Dice, and their sum.

Semantic segmentation classifies every pixel (seed 001 §6.6, Fig 6.16 (d)), so the classification
loss, categorical cross-entropy, applies per pixel; pixels whose target is the ignore index (255,
VOC's object borders) count nowhere. Cross-entropy is dominated by the many easy background pixels;
the Dice term, one minus the soft overlap ``2|P∩T| / (|P| + |T|)`` per class, weighs each class the
same whatever its area, which is what mean IoU rewards (segmentation_models_pytorch's ``DiceLoss``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvtasks.ops.masks import IGNORE_INDEX

LOSSES = ("ce", "dice", "ce_dice")


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    smooth: float = 0.0,
    eps: float = 1e-7,
) -> torch.Tensor:
    """One minus the mean soft Dice coefficient over the classes present in ``target``.

    For class ``c``, with ``p`` the softmax probability of ``c`` and ``t`` the indicator
    ``target == c``, summed over every non-ignored pixel of the batch:
    ``dice_c = (2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth)``. Classes absent from the
    target are left out of the mean (their Dice is 0 or undefined whatever the prediction);
    cross-entropy still penalizes predicting them.

    Args:
        logits: ``[B, C, H, W]`` raw scores.
        target: ``[B, H, W]`` class indices, ``ignore_index`` for pixels to leave out.
        ignore_index: the target value of ignored pixels.
        smooth: added to numerator and denominator.
        eps: lower bound of the denominator.

    Returns:
        A scalar in [0, 1]; 0 when every pixel is ignored.
    """
    num_classes = logits.shape[1]
    probs = logits.float().softmax(dim=1)
    valid = target != ignore_index
    # One-hot by comparison with the class indices: F.one_hot reads the targets' range back to
    # the host on some devices, to check it.
    classes = torch.arange(num_classes, device=target.device)[None, :, None, None]
    keep = valid[:, None]
    onehot = ((target[:, None] == classes) & keep).to(probs.dtype)
    probs = probs * keep.to(probs.dtype)
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    cardinality = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * intersection + smooth) / (cardinality + smooth).clamp_min(eps)
    present = (onehot.sum(dims) > 0).to(dice.dtype)
    # (1 - dice) averaged over present classes, written without a host sync on the count.
    return ((1.0 - dice) * present).sum() / present.sum().clamp_min(1.0)


class SegmentationLoss(nn.Module):
    """Cross-entropy (``ce``), Dice (``dice``), or ``ce_weight * CE + dice_weight * Dice``.

    Args:
        name: ``ce``, ``dice`` or ``ce_dice``.
        num_classes: number of classes, to check ``class_weights``.
        class_weights: per-class weights of the cross-entropy (rare classes up), or ``None``.
        ignore_index: target value of pixels that count in no term.
        ce_weight: weight of the cross-entropy in ``ce_dice``.
        dice_weight: weight of the Dice term in ``ce_dice``.
        dice_smooth: ``smooth`` of :func:`dice_loss`.

    Raises:
        ValueError: an unknown name, or ``class_weights`` of the wrong length or negative.
    """

    def __init__(
        self,
        name: str = "ce_dice",
        num_classes: int | None = None,
        class_weights: Sequence[float] | None = None,
        ignore_index: int = IGNORE_INDEX,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        dice_smooth: float = 0.0,
    ) -> None:
        super().__init__()
        if name not in LOSSES:
            raise ValueError(f"task.loss.name must be one of {', '.join(LOSSES)}; got {name!r}")
        weights = None
        if class_weights is not None:
            weights = torch.as_tensor([float(w) for w in class_weights])
            if num_classes is not None and len(weights) != num_classes:
                raise ValueError(
                    f"task.loss.class_weights has {len(weights)} values for {num_classes} classes"
                )
            if (weights < 0).any():
                raise ValueError(f"task.loss.class_weights must be >= 0, got {weights.tolist()}")
        self.register_buffer("class_weights", weights, persistent=False)
        self.name = name
        self.ignore_index = ignore_index
        self.ce_weight = float(ce_weight) if name == "ce_dice" else float(name == "ce")
        self.dice_weight = float(dice_weight) if name == "ce_dice" else float(name == "dice")
        self.dice_smooth = float(dice_smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of logits ``[B, C, H, W]`` against target indices ``[B, H, W]``."""
        loss = logits.new_zeros((), dtype=torch.float32)
        if self.ce_weight:
            ce = cross_entropy(logits, target, self.class_weights, self.ignore_index)
            loss = loss + self.ce_weight * ce
        if self.dice_weight:
            dice = dice_loss(logits, target, self.ignore_index, self.dice_smooth)
            loss = loss + self.dice_weight * dice
        return loss

    def extra_repr(self) -> str:
        return f"name={self.name!r}, ignore_index={self.ignore_index}"


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Per-pixel cross-entropy averaged over non-ignored pixels (weighted by their class weight).

    Equal to ``F.cross_entropy(..., ignore_index=...)``, except that a batch whose pixels are all
    ignored gives 0 instead of NaN (0 / 0).
    """
    total = F.cross_entropy(
        logits.float(), target, weight=class_weights, ignore_index=ignore_index, reduction="sum"
    )
    valid = target != ignore_index
    if class_weights is None:
        count = valid.sum().to(total.dtype)
    else:
        count = (class_weights[torch.where(valid, target, 0)] * valid).sum()
    return total / count.clamp_min(1e-12)
