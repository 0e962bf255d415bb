"""Box geometry: coordinate conversions, the IoU of matched pairs and the GIoU loss.

Boxes are ``float[..., 4]`` tensors. The localization task's format is ``cxcywh`` (centre x,
centre y, width, height), normalized to the image; readers and pictures use ``xyxy`` (left, top,
right, bottom). Losses, metrics and reports all take their box math from here.
Conversions come from :mod:`torchvision.ops`; torchvision's ``box_iou`` is pairwise (``N x M``),
so the element-wise IoU of matched pairs is computed here, and so is the GIoU loss (torchvision's
indexes by a mask, which makes the host wait for the GPU).
"""

from __future__ import annotations

import torch
from torchvision.ops import box_convert

__all__ = ["cxcywh_to_xyxy", "giou_loss", "paired_box_iou", "xyxy_to_cxcywh"]


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(cx, cy, w, h)`` → ``(x_min, y_min, x_max, y_max)`` (``torchvision.ops.box_convert``)."""
    return box_convert(boxes, in_fmt="cxcywh", out_fmt="xyxy")


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """``(x_min, y_min, x_max, y_max)`` → ``(cx, cy, w, h)`` (``torchvision.ops.box_convert``)."""
    return box_convert(boxes, in_fmt="xyxy", out_fmt="cxcywh")


def paired_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """IoU of each box of ``boxes1`` with the box at the same index of ``boxes2``.

    Args:
        boxes1: ``float[N, 4]`` in ``xyxy``.
        boxes2: ``float[N, 4]`` in ``xyxy``, same shape.
        eps: added to the union so that two empty boxes give 0, not NaN.

    Returns:
        ``float[N]`` in [0, 1]. A box with negative width or height counts as empty.
    """
    if boxes1.shape != boxes2.shape:
        raise ValueError(
            f"paired boxes need equal shapes, got {tuple(boxes1.shape)} and {tuple(boxes2.shape)}"
        )
    left_top = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    right_bottom = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    inter = (right_bottom - left_top).clamp(min=0).prod(dim=-1)
    area1 = (boxes1[..., 2:] - boxes1[..., :2]).clamp(min=0).prod(dim=-1)
    area2 = (boxes2[..., 2:] - boxes2[..., :2]).clamp(min=0).prod(dim=-1)
    return inter / (area1 + area2 - inter + eps)


def _at_least_float32(boxes: torch.Tensor) -> torch.Tensor:
    return boxes if boxes.dtype in (torch.float32, torch.float64) else boxes.float()


def giou_loss(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``1 - GIoU`` per pair of ``xyxy`` boxes (Rezatofighi et al., CVPR 2019).

    The value and gradient of ``torchvision.ops.generalized_box_iou_loss`` (the tests' oracle),
    computed with a mask where torchvision indexes the overlapping pairs: that indexing has a
    data-dependent size, which makes the host wait for the GPU in every training step.

    Returns:
        ``float[N]`` in [0, 2]: 0 for identical boxes, above 1 for boxes far apart.
    """
    x1, y1, x2, y2 = _at_least_float32(boxes1).unbind(dim=-1)
    x1g, y1g, x2g, y2g = _at_least_float32(boxes2).unbind(dim=-1)
    width = torch.minimum(x2, x2g) - torch.maximum(x1, x1g)
    height = torch.minimum(y2, y2g) - torch.maximum(y1, y1g)
    inter = torch.where((width > 0) & (height > 0), width * height, 0.0)
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    enclosing = (torch.maximum(x2, x2g) - torch.minimum(x1, x1g)) * (
        torch.maximum(y2, y2g) - torch.minimum(y1, y1g)
    )
    return 1 - (inter / (union + eps) - (enclosing - union) / (enclosing + eps))
