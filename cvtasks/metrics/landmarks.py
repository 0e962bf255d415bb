"""Landmark metrics that torchmetrics lacks: normalized mean error (NME) and PCK@alpha.

Both compare predicted and true points in pixels and divide by a per-image length, the
*normalizer* (:func:`landmark_normalizer`): the inter-ocular distance when the dataset names its
eye points (the usual face-alignment NME), else the diagonal of the object's box. Only visible
points count; an image without a visible point or with a zero normalizer is left out.

* :class:`NME`: per image, the mean distance over its visible points divided by the normalizer;
  then the mean over images (MMPose's ``NME``, 300W's protocol).
* :class:`PCK`: the share of visible points whose distance is at most ``alpha`` times the
  normalizer (MMPose's ``PCKAccuracy`` with the same normalizer as NME).
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric


def landmark_normalizer(
    target: torch.Tensor,
    visible: torch.Tensor,
    box_size: torch.Tensor | None = None,
    eyes: tuple[int, int] | None = None,
) -> torch.Tensor:
    """The per-image length that errors are divided by, in the units of ``target``.

    Args:
        target: true points ``float[B, K, 2]``.
        visible: ``bool[B, K]``.
        box_size: the object's box ``(w, h)`` per image ``float[B, 2]``; ``None`` uses the box of
            the visible true points.
        eyes: indices of the two eye points; ``None`` when the dataset names none.

    Returns:
        ``float[B]``: the distance between the eyes where both are visible, else the box
        diagonal (0 for an image with nothing to measure).
    """
    if box_size is None:
        big = torch.finfo(target.dtype).max
        mask = visible[..., None]
        low = torch.where(mask, target, torch.full_like(target, big)).amin(dim=1)
        high = torch.where(mask, target, torch.full_like(target, -big)).amax(dim=1)
        box_size = torch.where(visible.any(dim=1, keepdim=True), high - low, 0.0)
    norm = box_size.float().norm(dim=-1)
    if eyes is not None:
        left, right = eyes
        both = visible[:, left] & visible[:, right]
        interocular = (target[:, left] - target[:, right]).float().norm(dim=-1)
        norm = torch.where(both, interocular, norm)
    return norm


def _check(
    pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor, norm: torch.Tensor
) -> None:
    if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(
            f"points must both be [B, K, 2], got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if visible.shape != pred.shape[:2] or norm.shape != pred.shape[:1]:
        raise ValueError(
            f"visible must be [B, K] and norm [B] for {tuple(pred.shape[:2])} points, "
            f"got {tuple(visible.shape)} and {tuple(norm.shape)}"
        )


def _normalized_errors(
    pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor, norm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances divided by the normalizer ``[B, K]``, and which of them count ``[B, K]``."""
    _check(pred, target, visible, norm)
    counts = visible.bool() & (norm > 0)[:, None]
    distance = (pred.double() - target.double()).norm(dim=-1)
    return distance / norm.double().clamp(min=1e-12)[:, None], counts


class NME(Metric):
    """Normalized mean error: ``mean_images(mean_visible_points(|p - g|) / normalizer)``.

    ``update(pred, target, visible, norm)`` with points ``float[B, K, 2]`` in pixels, ``visible``
    ``bool[B, K]`` and ``norm`` ``float[B]`` (see :func:`landmark_normalizer`). ``compute()`` is
    NaN before any image counted.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state(
            "total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("images", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(
        self, pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor, norm: torch.Tensor
    ) -> None:
        """Add a batch of predictions."""
        errors, counts = _normalized_errors(pred, target, visible, norm)
        points = counts.sum(dim=1)
        per_image = (errors * counts).sum(dim=1) / points.clamp(min=1)
        # Out of place: states reset under inference mode (trainer.validate) are inference
        # tensors, which a later in-place update outside it (fit's validation) may not change.
        self.total = self.total + torch.where(points > 0, per_image, 0.0).sum()
        self.images = self.images + (points > 0).sum()

    def compute(self) -> torch.Tensor:
        """The NME over every image seen."""
        if self.images == 0:
            return torch.tensor(float("nan"))
        return (self.total / self.images).float()


class PCK(Metric):
    """Percentage of correct keypoints: visible points within ``alpha`` times the normalizer.

    ``update`` takes the same arguments as :class:`NME`. ``compute()`` is NaN before any point
    counted.

    Args:
        alpha: the threshold as a share of the normalizer (0.1 for PCK@0.1).
        **kwargs: ``torchmetrics.Metric`` options.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, alpha: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not alpha > 0:
            raise ValueError(f"PCK alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)
        self.add_state("correct", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("points", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(
        self, pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor, norm: torch.Tensor
    ) -> None:
        """Add a batch of predictions."""
        errors, counts = _normalized_errors(pred, target, visible, norm)
        self.correct = self.correct + ((errors <= self.alpha) & counts).sum()
        self.points = self.points + counts.sum()

    def compute(self) -> torch.Tensor:
        """The share of correct points over every point seen."""
        if self.points == 0:
            return torch.tensor(float("nan"))
        return self.correct.float() / self.points.float()
