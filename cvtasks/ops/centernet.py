"""CenterNet-style detection math: training targets, box decoding and peak-based inference.

An object is a peak of its class's heatmap at the output cell holding its centre (Zhou et al.,
"Objects as Points", 2019); its box is regressed densely as TTFNet does (Liu et al., "Training-
Time-Friendly Network for Real-Time Object Detection", 2020): every cell near the centre predicts
the distances ``(left, top, right, bottom)`` from the cell's centre to the box's edges.

Conventions: output cell ``(i, j)`` of a map at ``stride`` covers input pixels
``[j·s, (j+1)·s) x [i·s, (i+1)·s)`` and stands for its centre ``((j + 0.5)·s, (i + 0.5)·s)``;
boxes are ``xyxy`` in input pixels. Everything here is plain tensor math (no module state).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torchvision.ops import nms

__all__ = [
    "DetectionTargets",
    "cell_centres",
    "decode",
    "detection_targets",
    "distances_to_boxes",
    "unpad",
]


class DetectionTargets(NamedTuple):
    """What :func:`detection_targets` returns (a tuple of four maps).

    Attributes:
        heatmap: ``float[B, C, h, w]`` in [0, 1], exactly 1 at each object's centre cell.
        box: ``float[B, 4, h, w]``: the ``xyxy`` box (input pixels) of the object owning each
            cell; 0 where no object does.
        box_weight: ``float[B, 1, h, w]``: the weight of each cell's box loss, 0 outside every
            object's regression area.
        ignore: ``bool[B, C, h, w]``: cells of crowd regions, neither positive nor negative.
    """

    heatmap: torch.Tensor
    box: torch.Tensor
    box_weight: torch.Tensor
    ignore: torch.Tensor


def cell_centres(
    height: int, width: int, stride: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The input-pixel centres of the cells of a map: ``xs [width]`` and ``ys [height]``.

    Cell ``(i, j)`` stands for ``((j + 0.5) · stride, (i + 0.5) · stride)``.
    """
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * stride
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * stride
    return xs, ys


def distances_to_boxes(distances: torch.Tensor, stride: int) -> torch.Tensor:
    """``xyxy`` boxes from per-cell ``(left, top, right, bottom)`` distances.

    Args:
        distances: ``float[B, 4, h, w]`` in input pixels.
        stride: input pixels per cell.

    Returns:
        ``float[B, 4, h, w]``: ``(cx - left, cy - top, cx + right, cy + bottom)``.
    """
    height, width = distances.shape[-2:]
    xs, ys = cell_centres(int(height), int(width), stride, distances.device)
    xs, ys = xs.to(distances.dtype).view(1, 1, width), ys.to(distances.dtype).view(1, height, 1)
    left, top, right, bottom = distances.unbind(dim=1)
    return torch.stack([xs - left, ys - top, xs + right, ys + bottom], dim=1)


def _pad_objects(
    boxes: list[torch.Tensor],
    labels: list[torch.Tensor],
    crowd: list[torch.Tensor],
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack per-image objects into ``[B, M]`` tensors (M = most objects in one image)."""
    count = max((len(b) for b in boxes), default=0)
    most = max(count, 1)  # one empty slot keeps the shapes valid for batches without objects
    batch = len(boxes)
    box_pad = torch.zeros(batch, most, 4, device=device)
    label_pad = torch.zeros(batch, most, dtype=torch.long, device=device)
    valid = torch.zeros(batch, most, dtype=torch.bool, device=device)
    crowd_pad = torch.zeros(batch, most, dtype=torch.bool, device=device)
    for b, (box, label, is_crowd) in enumerate(zip(boxes, labels, crowd)):
        n = len(box)
        box_pad[b, :n] = box.to(device=device, dtype=torch.float32).reshape(n, 4)
        label_pad[b, :n] = label.to(device=device, dtype=torch.long)
        valid[b, :n] = True
        crowd_pad[b, :n] = is_crowd.to(device=device, dtype=torch.bool)
    return box_pad, label_pad, valid, crowd_pad


def _gaussian_factors(
    boxes: torch.Tensor, out_size: tuple[int, int], stride: int, ratio: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two 1-D factors ``gy [B, M, h]``, ``gx [B, M, w]`` of each box's truncated Gaussian.

    As TTFNet's ``draw_truncate_gaussian`` (eq. 2): peak 1 at the box's centre cell, radii
    ``floor(ratio · size / 2)`` cells per axis, standard deviations ``(2·radius + 1) / 6``, 0
    beyond the radii (so ``ratio`` < 1 keeps the area inside the box). The 2-D Gaussian is
    ``gy[..., :, None] * gx[..., None, :]``, since ``exp(a + b) = exp(a) · exp(b)``.
    """
    height, width = out_size
    cells = boxes / stride
    size_x, size_y = cells[..., 2] - cells[..., 0], cells[..., 3] - cells[..., 1]
    # The centre cell: the cell holding the box centre, clamped onto the map.
    cx = ((cells[..., 0] + cells[..., 2]) / 2).floor().clamp(0, width - 1)
    cy = ((cells[..., 1] + cells[..., 3]) / 2).floor().clamp(0, height - 1)
    radius_x = (ratio * size_x.clamp(min=0) / 2).floor()
    radius_y = (ratio * size_y.clamp(min=0) / 2).floor()
    sigma_x, sigma_y = (2 * radius_x + 1) / 6, (2 * radius_y + 1) / 6
    xs = torch.arange(width, device=boxes.device, dtype=torch.float32)
    ys = torch.arange(height, device=boxes.device, dtype=torch.float32)
    dx = xs - cx[..., None]  # [B, M, w]
    dy = ys - cy[..., None]  # [B, M, h]
    gx = torch.exp(-(dx**2) / (2 * sigma_x[..., None] ** 2)) * (dx.abs() <= radius_x[..., None])
    gy = torch.exp(-(dy**2) / (2 * sigma_y[..., None] ** 2)) * (dy.abs() <= radius_y[..., None])
    return gy, gx


def _truncated_gaussians(
    boxes: torch.Tensor, out_size: tuple[int, int], stride: int, ratio: float
) -> torch.Tensor:
    """The 2-D truncated Gaussians ``[B, M, h, w]`` of :func:`_gaussian_factors`."""
    gy, gx = _gaussian_factors(boxes, out_size, stride, ratio)
    return gy[..., :, None] * gx[..., None, :]


def _at_owner(factor: torch.Tensor, owner: torch.Tensor, axis: str) -> torch.Tensor:
    """A Gaussian factor of each cell's owner: ``[B, h, w]`` from ``factor`` and ``owner``.

    ``axis="y"``: ``factor [B, M, h]``, value ``factor[b, owner[b, i, j], i]``; ``axis="x"``:
    ``factor [B, M, w]``, value ``factor[b, owner[b, i, j], j]``.
    """
    batch, height, width = owner.shape
    by_cell = factor.transpose(1, 2)  # [B, h or w, M]
    grid = by_cell[:, :, None, :] if axis == "y" else by_cell[:, None, :, :]
    return grid.expand(batch, height, width, -1).gather(-1, owner[..., None])[..., 0]


def _per_class_max(values: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[B, M, h, w]`` per-object maps → ``[B, C, h, w]``, the max over each class's objects."""
    batch, most, height, width = values.shape
    rows = (torch.arange(batch, device=values.device)[:, None] * num_classes + labels).flatten()
    flat = values.reshape(batch * most, height * width)
    out = values.new_zeros(batch * num_classes, height * width)
    out.scatter_reduce_(0, rows[:, None].expand_as(flat), flat, "amax", include_self=True)
    return out.view(batch, num_classes, height, width)


def detection_targets(
    boxes: list[torch.Tensor],
    labels: list[torch.Tensor],
    crowd: list[torch.Tensor],
    num_classes: int,
    out_size: tuple[int, int],
    stride: int,
    alpha: float = 0.54,
    beta: float = 0.54,
) -> DetectionTargets:
    """Heatmap, box, box-weight and ignore targets of a batch (CenterNet peaks, TTFNet boxes).

    * heatmap: per object an elliptical Gaussian of radii ``alpha`` x half its size (TTFNet
      eq. 2), 1 at its centre cell; overlapping objects of a class take the max;
    * box and box weight: every cell inside an object's ``beta`` Gaussian regresses that
      object's box, the smaller object where areas overlap; its weight is the Gaussian value
      times ``log((w + 1)(h + 1))`` divided by the sum of the object's Gaussian (TTFNet), so
      each object weighs the log of its area whatever the number of its cells;
    * ignore: cells whose centre lies in a crowd box (and each crowd box's centre cell), for the
      crowd's class, unless they are an object's centre.

    Crowd objects give no heatmap peak and no box target.

    Args:
        boxes: per image ``float[N_i, 4]`` ``xyxy`` in input pixels.
        labels: per image ``int64[N_i]`` in 0..C-1.
        crowd: per image ``bool[N_i]``.
        num_classes: ``C``.
        out_size: ``(h, w)`` of the output maps.
        stride: input pixels per output cell.
        alpha: heatmap Gaussian size ratio.
        beta: box-regression area size ratio.

    Returns:
        :class:`DetectionTargets` on the device of the first box tensor (CPU without images).
    """
    size = (int(out_size[0]), int(out_size[1]))
    device = boxes[0].device if boxes else torch.device("cpu")
    box, label, valid, is_crowd = _pad_objects(boxes, labels, crowd, device)
    label = label.clamp(0, num_classes - 1)  # padding slots: masked below
    real = valid & ~is_crowd
    peaks = _truncated_gaussians(box, size, stride, alpha) * real[..., None, None]
    heatmap = _per_class_max(peaks, label, num_classes)
    crowd_area = _inside(box, size, stride) | (_truncated_gaussians(box, size, stride, 0.0) > 0)
    crowd_area &= (valid & is_crowd)[..., None, None]  # the box, and its centre cell if tiny
    ignore = (_per_class_max(crowd_area.float(), label, num_classes) > 0) & (heatmap < 1)
    box_target, weight = _box_targets(box, real, size, stride, beta)
    return DetectionTargets(heatmap, box_target, weight, ignore)


def _inside(box: torch.Tensor, out_size: tuple[int, int], stride: int) -> torch.Tensor:
    """``bool[B, M, h, w]``: the cells whose centre lies in each box."""
    xs, ys = cell_centres(out_size[0], out_size[1], stride, box.device)
    inside_x = (xs >= box[..., 0:1]) & (xs <= box[..., 2:3])  # [B, M, w]
    inside_y = (ys >= box[..., 1:2]) & (ys <= box[..., 3:4])  # [B, M, h]
    return inside_y[..., :, None] & inside_x[..., None, :]


def _box_targets(
    box: torch.Tensor, real: torch.Tensor, out_size: tuple[int, int], stride: int, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Box target ``[B, 4, h, w]`` and weight ``[B, 1, h, w]`` (see :func:`detection_targets`).

    The Gaussians stay factored (``[B, M, h]`` and ``[B, M, w]``): their sums and the values at
    each cell's owner need no ``[B, M, h, w]`` tensor.
    """
    height, width = out_size
    gy, gx = _gaussian_factors(box, out_size, stride, beta)
    gy = gy * real[..., None]
    sizes = (box[..., 2:] - box[..., :2]).clamp(min=0)
    area = sizes.prod(dim=-1)
    in_area = (gy > 0).transpose(1, 2)[:, :, None, :] & (gx > 0).transpose(1, 2)[:, None, :, :]
    owner_key = torch.where(in_area, area[:, None, None, :], torch.inf)  # [B, h, w, M]
    smallest, owner = owner_key.min(dim=-1)  # [B, h, w]: the smallest box covering each cell
    owned = smallest < torch.inf
    log_area = torch.log((sizes[..., 0] + 1) * (sizes[..., 1] + 1))
    scale = log_area / (gy.sum(dim=-1) * gx.sum(dim=-1)).clamp(min=1e-12)  # [B, M]
    picked_scale = scale.gather(1, owner.flatten(1)).view_as(owner)
    weight = _at_owner(gy, owner, "y") * _at_owner(gx, owner, "x") * picked_scale * owned
    index = owner.flatten(1)[..., None].expand(-1, -1, 4)  # [B, h*w, 4]
    target = box.gather(1, index).transpose(1, 2).reshape(box.shape[0], 4, height, width)
    return target * owned[:, None], weight[:, None]


def _pad_columns(tensor: torch.Tensor, columns: int, value: float) -> torch.Tensor:
    """``tensor [B, K, ...]`` with ``columns`` more slots of ``value`` along dim 1."""
    if columns <= 0:
        return tensor
    pad = tensor.new_full((1, columns, *tensor.shape[2:]), value)
    return torch.cat([tensor, pad.expand(tensor.shape[0], *pad.shape[1:])], dim=1)


def decode(
    heatmap_logits: torch.Tensor,
    box: torch.Tensor,
    stride: int,
    k: int = 100,
    score_threshold: float = 0.05,
    nms_iou: float = 0.5,
    max_detections: int = 100,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Detections from CenterNet outputs, as padded tensors (traceable, any batch size).

    Sigmoid scores; 3x3 max-pool peak picking (a cell survives when it is its neighbourhood's
    max, CenterNet's NMS-free step); the ``k`` best peaks over all classes and cells; class-wise
    NMS; the ``max_detections`` best survivors above ``score_threshold``, best first.

    The NMS of every (image, class) group runs in one ``torchvision.ops.nms`` call by shifting
    each group's boxes by ``group · (max coordinate + 1)`` so that groups never overlap (the
    trick of ``torchvision.ops.batched_nms``), and there is no Python loop over the batch, so
    ``torch.jit.trace``, ``torch.export`` and ONNX export record a graph valid for every batch
    size. The shift costs float32 precision as it grows: about 0.5 pixel once the number of
    groups times the largest coordinate passes 2^23 (batch 32 x 80 classes x 4000 pixels).

    Args:
        heatmap_logits: ``float[B, C, h, w]``.
        box: ``float[B, 4, h, w]``: ``(left, top, right, bottom)`` distances in input pixels.
        stride: input pixels per cell.
        k: peaks kept before NMS.
        score_threshold: lowest score kept.
        nms_iou: boxes of one class overlapping a better one by more than this IoU are dropped.
        max_detections: ``D``, the detections per image.

    Returns:
        ``boxes float[B, D, 4]`` (``xyxy`` input pixels), ``scores float[B, D]`` (0 in empty
        slots), ``labels int64[B, D]`` (-1 in empty slots).
    """
    num_classes, height, width = heatmap_logits.shape[1:]
    cells = int(height) * int(width)
    scores = heatmap_logits.float().sigmoid()
    peaks = F.max_pool2d(scores, 3, stride=1, padding=1)
    scores = torch.where(peaks == scores, scores, torch.zeros_like(scores))
    top_k = min(int(k), int(num_classes) * cells)
    top_scores, top_index = scores.flatten(1).topk(top_k, dim=1)  # [B, K]
    labels = torch.div(top_index, cells, rounding_mode="floor")
    cell = top_index - labels * cells
    all_boxes = distances_to_boxes(box.float(), stride).flatten(2).transpose(1, 2)  # [B, hw, 4]
    boxes = all_boxes.gather(1, cell[..., None].expand(-1, -1, 4))  # [B, K, 4]

    # One group per (image, class); image indices without reading the batch size, which
    # tracing would freeze into a constant.
    image = torch.ones_like(labels[:, :1]).cumsum(dim=0) - 1  # [B, 1]
    group = (image * num_classes + labels).flatten()
    flat_boxes = boxes.reshape(-1, 4)
    shifted = flat_boxes + (group * (flat_boxes.max() + 1)).to(flat_boxes.dtype)[:, None]
    kept = nms(shifted, top_scores.flatten(), nms_iou)
    survived = torch.zeros_like(group).index_fill(0, kept, 1).view_as(labels) > 0
    survived = survived & (top_scores > score_threshold)

    ranked = torch.where(survived, top_scores, torch.full_like(top_scores, -1.0))
    extra = int(max_detections) - top_k  # fewer candidates than slots: pad with empty ones
    ranked = _pad_columns(ranked, extra, -1.0)
    boxes, labels = _pad_columns(boxes, extra, 0.0), _pad_columns(labels, extra, -1)
    best, order = ranked.topk(int(max_detections), dim=1)
    filled = best > -1.0
    boxes = boxes.gather(1, order[..., None].expand(-1, -1, 4)) * filled[..., None]
    labels = torch.where(filled, labels.gather(1, order), torch.full_like(order, -1))
    return boxes, torch.where(filled, best, torch.zeros_like(best)), labels


def unpad(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor
) -> list[dict[str, torch.Tensor]]:
    """Per-image ``{"boxes": [D_i, 4], "scores": [D_i], "labels": [D_i]}`` of the filled slots.

    Args:
        boxes: ``float[B, D, 4]`` from :func:`decode`.
        scores: ``float[B, D]``.
        labels: ``int64[B, D]``, -1 in empty slots.
    """
    out = []
    for image_boxes, image_scores, image_labels in zip(boxes, scores, labels):
        filled = image_labels >= 0
        out.append(
            {
                "boxes": image_boxes[filled],
                "scores": image_scores[filled],
                "labels": image_labels[filled],
            }
        )
    return out
