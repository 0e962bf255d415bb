"""Tiled prediction of dense tasks on images larger than the network's input.

A network trained on ``S x S`` images sees objects at the scale of its training pictures. Resizing
a large photo down to ``S x S`` shrinks every object by the same factor; tiling instead runs the
network on ``S x S`` windows of the image at its native resolution, ``stride = S * (1 - overlap)``
apart, as MMSegmentation's slide inference does:

- the window grid (:func:`window_starts`, :func:`window_grid`) starts at 0, steps by the stride
  and moves the last window back inside the image, so every pixel is covered and every window
  lies inside the image; an image smaller than a window is first padded at its bottom and right
  (:func:`pad_to`: by reflection, or zeros where the image is too small to reflect);
- segmentation blends the windows' class probabilities with a weight map (:func:`weight_map`: a
  Gaussian or a linear tent, largest at the window's centre, where the network sees the most
  context) divided by the summed weights (:func:`blend_windows`), so seams do not show; the
  arg-max is taken on the blended map, at the image's size;
- detection shifts each window's boxes into the image frame, drops a box cut by its window's
  border where another window holds it whole (:func:`drop_cut_boxes`), and merges the rest with
  class-wise NMS (``torchvision.ops.batched_nms``, :func:`merge_detections`).

Windows go through the network ``batch`` at a time, so memory grows with the window batch, not
with the image (the blended maps are the image's size, one float per class and pixel).
The window size should be the training image size: the network then sees pixels at the scale it
learnt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms

#: the tasks whose outputs are per pixel (or per region) and can be tiled
TILED_TASKS = ("segmentation", "detection")
#: how window outputs are weighted where windows overlap
BLENDS = ("gaussian", "linear")


@dataclass(frozen=True)
class Tiling:
    """How to cut an image into windows.

    Args:
        size: window ``(height, width)`` in pixels (the training image size).
        overlap: share of a window that overlaps the next one, in ``[0, 1)``.
        blend: ``"gaussian"`` or ``"linear"`` weights where windows overlap.
        batch: windows per network call.
    """

    size: tuple[int, int]
    overlap: float = 0.25
    blend: str = "gaussian"
    batch: int = 8

    @property
    def stride(self) -> tuple[int, int]:
        """Step between window origins, ``size * (1 - overlap)`` (at least 1 pixel)."""
        height, width = (max(1, round(s * (1.0 - self.overlap))) for s in self.size)
        return height, width


def make_tiling(tile: object, overlap: object, blend: object, batch: object) -> Tiling:
    """A checked :class:`Tiling` from command-line values.

    Raises:
        ValueError: one line naming the bad key, its value and what it takes.
    """
    if isinstance(tile, int) and not isinstance(tile, bool):
        size = (tile, tile)
    elif (
        isinstance(tile, Sequence)
        and not isinstance(tile, str)
        and len(tile) == 2
        and all(isinstance(t, int) and not isinstance(t, bool) for t in tile)
    ):
        size = (int(tile[0]), int(tile[1]))
    else:
        size = (0, 0)
    if min(size) < 1:
        raise ValueError(
            f"tile={tile!r}: give the window size in pixels, an int or [height, width] "
            "(the model's training image_size, e.g. tile=64), or tile=null to resize instead"
        )
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap < 1:
        raise ValueError(f"overlap={overlap!r}: give a fraction in [0, 1), e.g. overlap=0.25")
    if blend not in BLENDS:
        raise ValueError(f"tile_blend={blend!r}: choose one of {', '.join(BLENDS)}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"tile_batch={batch!r}: give a positive int (windows per network call)")
    return Tiling(size, float(overlap), str(blend), int(batch))


def window_starts(length: int, tile: int, stride: int) -> list[int]:
    """Origins of windows of ``tile`` pixels covering ``length`` pixels, ``stride`` apart.

    The last window is moved back so it ends at ``length`` (MMSegmentation's slide inference);
    a ``length`` up to ``tile`` gives one window at 0 (the image is padded to it).
    """
    if length <= tile:
        return [0]
    count = math.ceil((length - tile) / stride) + 1
    return sorted({min(k * stride, length - tile) for k in range(count)})


def window_grid(height: int, width: int, tiling: Tiling) -> list[tuple[int, int]]:
    """``(top, left)`` of every window over an image of ``height x width``, row by row."""
    (tile_h, tile_w), (stride_h, stride_w) = tiling.size, tiling.stride
    rows = window_starts(height, tile_h, stride_h)
    columns = window_starts(width, tile_w, stride_w)
    return [(top, left) for top in rows for left in columns]


def pad_to(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``images [B, C, H, W]`` padded at the bottom and right to at least ``size``.

    Reflection where the image is large enough to mirror (PyTorch needs the pad below the
    side), zeros otherwise: zero is the mean colour of normalized pixels.
    """
    height, width = images.shape[-2:]
    pad_h, pad_w = max(size[0] - height, 0), max(size[1] - width, 0)
    if not pad_h and not pad_w:
        return images
    mode = "reflect" if pad_h < height and pad_w < width else "constant"
    return F.pad(images, (0, pad_w, 0, pad_h), mode=mode)


def _profile(length: int, blend: str) -> torch.Tensor:
    centre = (torch.arange(length, dtype=torch.float64) + 0.5) / length * 2 - 1  # -1..1
    # Gaussian: sigma = 1/8 of the window (nnU-Net's choice), the border keeps exp(-8) of the
    # centre; linear: a tent, 1/length at the outer pixels
    gaussian = blend == "gaussian"
    values = torch.exp(-0.5 * (centre / 0.25) ** 2) if gaussian else 1 - centre.abs()
    return values / values.max()


def weight_map(size: tuple[int, int], blend: str = "gaussian") -> torch.Tensor:
    """``float32 [H, W]`` weights of one window's outputs, 1 at the centre, positive everywhere."""
    if blend not in BLENDS:
        raise ValueError(f"tile_blend={blend!r}: choose one of {', '.join(BLENDS)}")
    profile_h, profile_w = _profile(size[0], blend), _profile(size[1], blend)
    return torch.outer(profile_h, profile_w).float()


def _chunks(items: list[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def crop_windows(padded: torch.Tensor, origins: list[tuple[int, int]], size: tuple[int, int]):
    """The windows at ``origins`` of one padded image ``[1, C, H, W]``, as ``[N, C, h, w]``."""
    tile_h, tile_w = size
    return torch.cat([padded[..., t : t + tile_h, x : x + tile_w] for t, x in origins])


def blend_windows(
    forward: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, tiling: Tiling
) -> torch.Tensor:
    """Per-pixel maps of ``forward`` over windows of ``image``, blended into the image's size.

    Args:
        forward: windows ``[N, C, h, w]`` to maps ``[N, K, h, w]`` (e.g. class probabilities).
        image: one image ``[1, C, H, W]``.
        tiling: window size, overlap, weights and windows per call.

    Returns:
        ``float32 [1, K, H, W]``: at each pixel, the weighted mean of the windows covering it.
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"blend_windows takes one image [1, C, H, W], got {tuple(image.shape)}")
    height, width = image.shape[-2:]
    padded = pad_to(image, tiling.size)
    origins = window_grid(padded.shape[-2], padded.shape[-1], tiling)
    tile_h, tile_w = tiling.size
    weights = weight_map(tiling.size, tiling.blend).to(image.device)
    total = torch.zeros(padded.shape[-2:], device=image.device)
    summed: torch.Tensor | None = None
    for chunk in _chunks(origins, tiling.batch):
        maps = forward(crop_windows(padded, chunk, tiling.size)).float()
        if summed is None:
            summed = maps.new_zeros((1, maps.shape[1], *padded.shape[-2:]))
        for (top, left), window in zip(chunk, maps):
            summed[0, :, top : top + tile_h, left : left + tile_w] += window * weights
            total[top : top + tile_h, left : left + tile_w] += weights
    assert summed is not None  # the grid holds at least one window
    return (summed / total)[..., :height, :width]


def shift_boxes(boxes: torch.Tensor, top: int, left: int) -> torch.Tensor:
    """Boxes ``[N, 4]`` (x1, y1, x2, y2) of a window at ``(top, left)`` in the image's frame."""
    return boxes + boxes.new_tensor([left, top, left, top])


def drop_cut_boxes(
    boxes: torch.Tensor,
    window: torch.Tensor,
    windows: torch.Tensor,
    image_size: tuple[int, int],
    margin: float = 1.0,
) -> torch.Tensor:
    """Which boxes to keep: all but those cut by their window's border inside the image that
    another window holds whole.

    A box touching (within ``margin`` pixels) an edge of its window that is not the image's edge
    is probably a part of an object; when some other window contains the whole box, away from
    that window's inner edges, that window sees the object whole and its box is the one to keep.

    Args:
        boxes: ``[N, 4]`` boxes in the image's frame.
        window: ``int64 [N]``, the index in ``windows`` of the window each box came from.
        windows: ``[W, 4]`` windows ``(x1, y1, x2, y2)`` in the image's frame.
        image_size: ``(height, width)`` of the image.
        margin: how close to an edge counts as touching it.

    Returns:
        ``bool [N]``.
    """
    height, width = image_size
    limits = windows.new_tensor([0.0, 0.0, float(width), float(height)])
    own = windows[window]  # [N, 4]
    # an edge of the window that lies inside the image, and the box touches it
    inner = (own - limits).abs() > margin  # [N, 4]
    near = torch.cat([boxes[:, :2] - own[:, :2] <= margin, own[:, 2:] - boxes[:, 2:] <= margin], 1)
    cut = (inner & near).any(dim=1)
    # a window holds a box whole: inside it, off its inner edges
    w_inner = (windows - limits).abs() > margin  # [W, 4]
    slack = torch.where(w_inner, margin, -math.inf)  # an image edge may be touched
    low = boxes[:, None, :2] - windows[None, :, :2] > slack[None, :, :2]
    high = windows[None, :, 2:] - boxes[:, None, 2:] > slack[None, :, 2:]
    whole = torch.cat([low, high], dim=2).all(dim=2)  # [N, W]
    whole[torch.arange(len(boxes)), window] = False
    return ~(cut & whole.any(dim=1))


def merge_detections(
    found: list[dict[str, torch.Tensor]],
    origins: list[tuple[int, int]],
    tiling: Tiling,
    image_size: tuple[int, int],
    nms_iou: float,
    max_detections: int,
) -> dict[str, torch.Tensor]:
    """One image's detections from its windows' detections.

    Each window's boxes are shifted into the image's frame and clipped to it; a box cut by an
    inner window border is dropped where another window holds it whole (:func:`drop_cut_boxes`);
    class-wise NMS merges what overlapping windows both found; the best ``max_detections`` stay.

    Args:
        found: per window ``{"boxes": [D, 4], "scores": [D], "labels": [D]}`` in window pixels.
        origins: ``(top, left)`` of each window.
        tiling: the window size.
        image_size: ``(height, width)`` of the image (unpadded).
        nms_iou: IoU above which the lower-scored box of one class is suppressed.
        max_detections: the most detections kept.

    Returns:
        ``{"boxes": [D, 4], "scores": [D], "labels": [D]}`` in image pixels, best first.
    """
    height, width = image_size
    tile_h, tile_w = tiling.size
    shifted = [shift_boxes(f["boxes"].float(), t, x) for f, (t, x) in zip(found, origins)]
    boxes = torch.cat(shifted) if shifted else torch.zeros(0, 4)
    limit = boxes.new_tensor([width, height, width, height])
    boxes = torch.minimum(boxes.clamp(min=0), limit)
    scores = torch.cat([f["scores"].float() for f in found]) if found else torch.zeros(0)
    labels = torch.cat([f["labels"].long() for f in found]) if found else torch.zeros(0).long()
    window = torch.cat([torch.full((len(f["scores"]),), k) for k, f in enumerate(found)])
    frames = boxes.new_tensor([[x, t, x + tile_w, t + tile_h] for t, x in origins])
    frames = torch.minimum(frames, limit)  # a padded window ends at the image's edge
    keep = drop_cut_boxes(boxes, window.to(boxes.device), frames, image_size)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    kept = batched_nms(boxes, scores, labels, nms_iou)[:max_detections]
    return {"boxes": boxes[kept], "scores": scores[kept], "labels": labels[kept]}


def tiled_log_probabilities(
    forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, tiling: Tiling
) -> torch.Tensor:
    """Segmentation over windows: the log of the blended class probabilities.

    Args:
        forward: windows ``[N, C, h, w]`` to class logits ``[N, K, h, w]``.
        images: ``[B, C, H, W]``, each image tiled on its own.
        tiling: window size, overlap, weights and windows per call.

    Returns:
        ``float32 [B, K, H, W]`` whose softmax is the blended probabilities (so it stands for the
        logits wherever those are read: arg-max, softmax, cross-entropy).
    """

    def probabilities(windows: torch.Tensor) -> torch.Tensor:
        return forward(windows).float().softmax(dim=1)

    blended = [blend_windows(probabilities, images[k : k + 1], tiling) for k in range(len(images))]
    return torch.cat(blended).clamp_min(torch.finfo(torch.float32).tiny).log()


def tiled_detections(
    detect: Callable[[torch.Tensor], list[dict[str, torch.Tensor]]],
    image: torch.Tensor,
    tiling: Tiling,
    nms_iou: float,
    max_detections: int,
) -> dict[str, torch.Tensor]:
    """Detection over windows of one image ``[1, C, H, W]``, merged in the image's frame.

    Args:
        detect: windows ``[N, C, h, w]`` to their decoded detections in window pixels.
        image: the image.
        tiling: window size, overlap and windows per call.
        nms_iou: class-wise NMS threshold of the merge.
        max_detections: the most detections kept.

    Returns:
        ``{"boxes": [D, 4], "scores": [D], "labels": [D]}`` in image pixels (see
        :func:`merge_detections`).
    """
    height, width = image.shape[-2:]
    padded = pad_to(image, tiling.size)
    origins = window_grid(padded.shape[-2], padded.shape[-1], tiling)
    found: list[dict[str, torch.Tensor]] = []
    for chunk in _chunks(origins, tiling.batch):
        found.extend(detect(crop_windows(padded, chunk, tiling.size)))
    found = [{key: value.detach().cpu() for key, value in f.items()} for f in found]
    return merge_detections(found, origins, tiling, (height, width), nms_iou, max_detections)
