"""Test-time augmentation: a batch, its mirror image and rescaled copies, merged in its own frame.

``tta=flip`` runs the network on the images and on their horizontal mirrors; ``tta=flip_scale``
adds copies resized to 0.75 and 1.25 of the input size (each also mirrored). The raw outputs of
every view go to the task's :meth:`~cvtasks.tasks.base.TaskModule.tta_merge`, which maps them
back into the frame of the original image (a mirrored heatmap is mirrored back, a left eye found
in the mirror image is the right eye of the original, a box's ``x`` becomes ``W - x``) and merges
them into one set of raw outputs of the usual form. Everything after the network (loss, metrics,
decoding, predictions, reports) then runs unchanged.

:func:`apply` puts :class:`TestTimeAugmentation` in place of a task's network (the inference
copy's in :class:`~cvtasks.inference.Predictor`, the loaded model's for ``evaluate``'s test
loop). This module holds the views and the task-independent merging arithmetic.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from cvtasks.network_parts import NetworkParts

if TYPE_CHECKING:
    from cvtasks.tasks.base import TaskModule

log = logging.getLogger(__name__)

#: the test-time augmentations by name (``tta=...``); ``None`` turns it off.
MODES = ("flip", "flip_scale")
#: the input sizes of ``flip_scale``, as multiples of the model's input size.
SCALES = (0.75, 1.0, 1.25)
#: probabilities are clamped this far from 0 and 1 before they become logits again.
EPS = 1e-7


@dataclass(frozen=True)
class View:
    """One augmented view of a batch: mirrored left-right or not, and resized by ``scale``."""

    flip: bool = False
    scale: float = 1.0


def check_mode(mode: str | None) -> str | None:
    """``mode`` as a name of :data:`MODES`, or ``None`` (off) for ``None``, ``"none"``, ``""``.

    Raises:
        ValueError: any other value, naming the ones allowed.
    """
    if mode is None or str(mode).lower() in ("", "none", "null", "false"):
        return None
    if mode not in MODES:
        raise ValueError(
            f"tta={mode!r} is not a test-time augmentation: use tta=flip, tta=flip_scale or "
            "tta=null (off)"
        )
    return str(mode)


def views_for(mode: str) -> list[View]:
    """The views of a mode, the plain image first: ``flip``: plain and mirrored; ``flip_scale``:
    both at each of :data:`SCALES`."""
    scales = SCALES if check_mode(mode) == "flip_scale" else (1.0,)
    order = sorted(scales, key=lambda s: s != 1.0)  # the plain image first, at its own size
    return [View(flip, scale) for scale in order for flip in (False, True)]


def scaled_size(size: Sequence[int], scale: float, multiple: int = 1) -> tuple[int, int]:
    """``(height, width)`` times ``scale``, rounded to the nearest multiple of ``multiple``
    (the network's deepest reduction, so dense heads see whole cells), at least one multiple."""
    if scale == 1.0:
        return int(size[0]), int(size[1])
    return tuple(max(multiple, round(int(s) * scale / multiple) * multiple) for s in size)


def transform(images: torch.Tensor, view: View, multiple: int = 1) -> torch.Tensor:
    """``images`` ``[B, C, H, W]`` as ``view`` sees them: resized (bilinear), then mirrored."""
    size = scaled_size(images.shape[-2:], view.scale, multiple)
    if size != tuple(images.shape[-2:]):
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    return images.flip(-1) if view.flip else images


class TestTimeAugmentation(NetworkParts, nn.Module):
    """A network run on every view of a batch, its outputs merged by the task.

    Args:
        net: the task's network (images to raw outputs).
        merge: ``merge(outputs, views, size)``: the task's merging of the views' raw outputs
            (one per view, in the order of ``views``) for inputs of ``size`` ``(H, W)``.
        views: the views, the plain image first.
        multiple: rescaled views are sized to multiples of this (the deepest reduction).
    """

    def __init__(
        self,
        net: nn.Module,
        merge: Callable[[list[Any], Sequence[View], tuple[int, int]], Any],
        views: Sequence[View],
        multiple: int = 1,
    ) -> None:
        super().__init__()
        self.net = net
        self.merge = merge
        self.views = list(views)
        self.multiple = int(multiple)
        #: the name of the views (``tta=...``) when :func:`apply` made them
        self.mode: str | None = None

    def forward(self, images: torch.Tensor) -> Any:
        """The merged raw outputs of every view of ``images``, in the images' own frame."""
        size = (int(images.shape[-2]), int(images.shape[-1]))
        views = self.distinct_views(size)
        outputs = []
        for view in views:
            try:
                outputs.append(self.net(transform(images, view, self.multiple)))
            except RuntimeError as error:
                if view.scale == 1.0:
                    raise
                scaled = scaled_size(size, view.scale, self.multiple)
                reason = str(error).strip().splitlines()[0]
                raise ValueError(
                    f"tta=flip_scale: the network cannot take {scaled[0]}x{scaled[1]} inputs "
                    f"({view.scale} x {size[0]}x{size[1]}): {reason}; use tta=flip"
                ) from error
        return self.merge(outputs, views, size)

    def distinct_views(self, size: tuple[int, int]) -> list[View]:
        """The views of images of ``size`` that differ once sized to whole multiples: a small
        input's rescaled copies may round back to its own size (64 px at a reduction of 32:
        both 48 and 80 round to 64) and would only repeat the plain views."""
        seen, views = set(), []
        for view in self.views:
            key = (view.flip, scaled_size(size, view.scale, self.multiple))
            if key not in seen:
                seen.add(key)
                views.append(view)
        return views


def apply(task: TaskModule, mode: str | None) -> str | None:
    """Run ``task``'s network under test-time augmentation ``mode`` (in place).

    A network already under one keeps it when ``mode`` is ``None`` (an inference copy of a task
    inside :func:`applied`), and is unwrapped first for another mode: augmentations never stack.

    A task that merges mirrored views only (``"flip_scale"`` not in its ``tta_modes``) runs
    ``flip`` instead of ``flip_scale``, with a warning saying so.

    Returns:
        The mode that runs (``None``: none).

    Raises:
        ValueError: an unknown mode, or a task that merges no views at all.
    """
    mode = check_mode(mode)
    if isinstance(task.net, TestTimeAugmentation):
        if mode is None:
            return task.net.mode
        task.net = task.net.net
    if mode is None:
        return None
    name = type(task).__name__
    if not task.tta_modes:
        raise ValueError(f"tta={mode}: {name} cannot merge augmented views; use tta=null")
    if mode not in task.tta_modes:
        log.warning("tta=%s: %s merges mirrored views only; running tta=flip", mode, name)
        mode = "flip"
    multiple = max(int(info["reduction"]) for info in task.backbone.feature_info)
    task.net = TestTimeAugmentation(task.net, task.tta_merge, views_for(mode), multiple)
    task.net.mode = mode
    return mode


@contextlib.contextmanager
def applied(task: TaskModule, mode: str | None) -> Iterator[str | None]:
    """:func:`apply` for the duration of a ``with`` block; the network is put back after it."""
    net = task.net
    try:
        yield apply(task, mode)
    finally:
        task.net = net


# -- merging arithmetic shared by the tasks' ``tta_merge`` --------------------------------------
def mean_probabilities(probabilities: Sequence[torch.Tensor]) -> torch.Tensor:
    """The element-wise mean of the views' probabilities (float32)."""
    return torch.stack([p.float() for p in probabilities]).mean(dim=0)


def softmax_logits(probabilities: torch.Tensor) -> torch.Tensor:
    """Logits whose softmax (over dim 1) is ``probabilities``: their logarithm."""
    return probabilities.clamp_min(EPS).log()


def sigmoid_logits(probabilities: torch.Tensor) -> torch.Tensor:
    """Logits whose sigmoid is ``probabilities`` (clamped to ``[EPS, 1 - EPS]``)."""
    return torch.logit(probabilities, eps=EPS)


def mirror_xyxy(boxes: torch.Tensor, width: float) -> torch.Tensor:
    """``[..., 4]`` ``(x1, y1, x2, y2)`` boxes of a mirror image in the original's frame:
    ``x -> width - x``, the two ``x`` swapped so that ``x1 <= x2`` again."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([width - x2, y1, width - x1, y2], dim=-1)


def mirror_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` normalized ``(cx, cy, w, h)`` boxes of a mirror image in the original's
    frame: ``cx -> 1 - cx``."""
    return torch.cat([1.0 - boxes[..., :1], boxes[..., 1:]], dim=-1)


def flip_permutation(num_points: int, pairs: Sequence[Sequence[int]]) -> list[int]:
    """Point order of a mirror image: index ``i`` holds the point that ``i`` becomes when the
    image is mirrored (each ``(left, right)`` pair swapped, other points kept)."""
    order = list(range(num_points))
    for left, right in pairs:
        order[left], order[right] = int(right), int(left)
    return order


def merge_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    nms_iou: float,
    max_detections: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The detections of every view of an image as one set: class-wise NMS over their union.

    Args:
        boxes: ``float[B, N, 4]`` ``xyxy`` boxes of all views, in the original frame.
        scores: ``float[B, N]``.
        labels: ``int64[B, N]``, -1 in empty slots.
        nms_iou: a box overlapping a better one of its class by more than this is dropped.
        max_detections: ``D``, slots per image.

    Returns:
        Padded ``boxes [B, D, 4]``, ``scores [B, D]`` (0 in empty slots), ``labels [B, D]``
        (-1 in empty slots), best first: the form of :func:`cvtasks.ops.centernet.decode`.
    """
    batch = boxes.shape[0]
    out_boxes = boxes.new_zeros(batch, max_detections, 4)
    out_scores = scores.new_zeros(batch, max_detections)
    out_labels = labels.new_full((batch, max_detections), -1)
    for k in range(batch):
        filled = labels[k] >= 0
        kept = batched_nms(boxes[k][filled], scores[k][filled], labels[k][filled], nms_iou)
        kept = kept[:max_detections]  # batched_nms returns them best first
        n = kept.numel()
        out_boxes[k, :n] = boxes[k][filled][kept]
        out_scores[k, :n] = scores[k][filled][kept]
        out_labels[k, :n] = labels[k][filled][kept]
    return out_boxes, out_scores, out_labels


def check_flip_pairs(
    pairs: Sequence[Sequence[int]], num_points: int, where: str = "task.flip_pairs"
) -> list[tuple[int, int]]:
    """``pairs`` as ``(left, right)`` index tuples, each point in at most one pair.

    Raises:
        ValueError: a pair that is not two distinct indices in ``[0, num_points)``, or a point
            in two pairs; the message names ``where``.
    """
    seen: set[int] = set()
    checked = []
    for pair in pairs:
        indices = [int(i) for i in pair]
        if len(indices) != 2 or indices[0] == indices[1] or set(indices) & seen:
            raise ValueError(
                f"{where}: {list(pair)} is not a pair of two points that are in no other pair"
            )
        if not all(0 <= i < num_points for i in indices):
            raise ValueError(f"{where}: {list(pair)} names a point outside 0..{num_points - 1}")
        seen.update(indices)
        checked.append((indices[0], indices[1]))
    return checked
