"""Landmark losses: point regression (MSE, L1, wing) and MSE on Gaussian heatmaps.

Seed 001 §6.6 (Fig 6.16 (c)) says landmark detection outputs "a list of coordinates of the locations
of landmarks" and is handled "in a similar spirit to object localization", whose localization loss
is "a mean squared error ... or some variant" on the coordinates ("Object Localization"). Here the
variants are L1 and the wing loss, and the heatmap form renders each point as a Gaussian blob that a
fully convolutional head regresses.

Only points marked visible count: every loss averages over the visible points (or their heatmaps)
of the batch, and a batch without any visible point gives a zero loss that still has a graph.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

POINT_LOSSES = ("mse", "l1", "wing")


def _check_points(pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(
            f"points must both be [B, K, 2], got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if visible.shape != pred.shape[:2]:
        raise ValueError(f"visible must be [B, K] = {tuple(pred.shape[:2])}, got {visible.shape}")


def _masked_mean(values: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Mean of ``values [B, K]`` over the visible entries; 0 (with a graph) when there are none."""
    mask = visible.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def wing_loss(error: torch.Tensor, width: float = 10.0, curvature: float = 2.0) -> torch.Tensor:
    """Element-wise wing loss of Feng et al. (CVPR 2018), on absolute errors.

    ``width * ln(1 + |x| / curvature)`` for ``|x| < width``, else ``|x| - C`` with
    ``C = width - width * ln(1 + width / curvature)`` so that both pieces meet. The log part
    weighs small and medium errors more than L1 or MSE do, which is what sub-pixel landmarks need.

    Args:
        error: prediction minus target, any shape, in the units ``width`` is given in.
        width: where the log part ends (the paper's ``w = 10`` pixels).
        curvature: the log part's curvature (the paper's ``epsilon = 2``).

    Returns:
        The loss of every element, same shape as ``error``.
    """
    if width <= 0 or curvature <= 0:
        raise ValueError(f"wing width and curvature must be > 0, got {width} and {curvature}")
    x = error.abs()
    c = width - width * math.log1p(width / curvature)
    return torch.where(x < width, width * torch.log1p(x / curvature), x - c)


def point_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    visible: torch.Tensor,
    kind: str = "mse",
    width: float = 10.0,
    curvature: float = 2.0,
) -> torch.Tensor:
    """Coordinate loss averaged over the visible points.

    Each point's loss is the sum over its ``x`` and ``y`` of the element-wise loss (squared error,
    absolute error, or :func:`wing_loss`); the result is the mean over visible points.

    Args:
        pred: predicted points ``float[B, K, 2]``.
        target: true points, same shape and units (cvtasks uses pixels of the network input, so
            that the wing loss's ``width`` is in pixels as in the paper).
        visible: ``bool[B, K]``; invisible points do not count.
        kind: ``"mse"``, ``"l1"`` or ``"wing"``.
        width: wing loss width.
        curvature: wing loss curvature.

    Returns:
        A scalar.
    """
    _check_points(pred, target, visible)
    error = pred.float() - target.float()
    if kind == "mse":
        per_coord = error.square()
    elif kind == "l1":
        per_coord = error.abs()
    elif kind == "wing":
        per_coord = wing_loss(error, width, curvature)
    else:
        raise ValueError(f"point loss must be one of {POINT_LOSSES}, got {kind!r}")
    return _masked_mean(per_coord.sum(dim=-1), visible)


def gaussian_heatmaps(keypoints: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """Render one Gaussian per point on a ``height x width`` grid.

    Cell ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)`` in heatmap units and is sampled at its
    centre ``(j + 0.5, i + 0.5)``; a point at normalized ``(x, y)`` sits at
    ``(x * width, y * height)``. Peaks are 1 at the point, whatever the sub-cell offset.

    Args:
        keypoints: normalized points ``float[B, K, 2]`` (``x, y`` in [0, 1] inside the image).
        size: ``(height, width)`` of the heatmaps.
        sigma: standard deviation in heatmap cells.

    Returns:
        ``float[B, K, height, width]`` with values in (0, 1].
    """
    if sigma <= 0:
        raise ValueError(f"heatmap sigma must be > 0 (heatmap cells), got {sigma}")
    height, width = size
    device = keypoints.device
    xs = torch.arange(width, device=device, dtype=torch.float32) + 0.5
    ys = torch.arange(height, device=device, dtype=torch.float32) + 0.5
    cx = keypoints[..., 0].float() * width
    cy = keypoints[..., 1].float() * height
    dx = (xs.view(1, 1, 1, -1) - cx[..., None, None]).square()
    dy = (ys.view(1, 1, -1, 1) - cy[..., None, None]).square()
    return torch.exp(-(dx + dy) / (2.0 * sigma**2))


def heatmap_loss(
    heatmaps: torch.Tensor, keypoints: torch.Tensor, visible: torch.Tensor, sigma: float = 1.5
) -> torch.Tensor:
    """MSE between predicted heatmaps and Gaussians at the true points, over visible points.

    Args:
        heatmaps: predicted ``float[B, K, h, w]``.
        keypoints: true normalized points ``float[B, K, 2]``.
        visible: ``bool[B, K]``; an invisible point's heatmap does not count.
        sigma: Gaussian standard deviation in heatmap cells.

    Returns:
        A scalar: the per-pixel squared error, averaged over pixels and visible points.
    """
    if heatmaps.ndim != 4 or heatmaps.shape[:2] != keypoints.shape[:2]:
        raise ValueError(
            f"heatmaps must be [B, K, h, w] for {tuple(keypoints.shape[:2])} points, "
            f"got {tuple(heatmaps.shape)}"
        )
    target = gaussian_heatmaps(keypoints, tuple(heatmaps.shape[-2:]), sigma)
    per_map = F.mse_loss(heatmaps.float(), target, reduction="none").mean(dim=(-2, -1))
    return _masked_mean(per_map, visible)


def visibility_loss(logits: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy teaching per-point confidence logits ``[B, K]`` which points count."""
    return F.binary_cross_entropy_with_logits(logits.float(), visible.float())
