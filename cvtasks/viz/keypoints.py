"""Keypoints drawn on an image: points coloured by index, the skeleton joining them.

A point whose confidence is below ``threshold`` is drawn as a hollow ring and its skeleton edges
are left out, so a glance tells confident points from guesses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
)
"""Point colours by index (cycled), distinct on most backgrounds."""
EDGE_COLOUR = (255, 255, 255)


def draw_keypoints(
    image: Image.Image | np.ndarray,
    keypoints: Sequence[Sequence[float]] | np.ndarray,
    confidence: Sequence[float] | np.ndarray | None = None,
    skeleton: Sequence[Sequence[int]] = (),
    names: Sequence[str] | None = None,
    threshold: float = 0.5,
    radius: float | None = None,
) -> Image.Image:
    """Draw points (and optionally their skeleton and names) on a copy of ``image``.

    Args:
        image: a PIL image or a ``uint8`` array ``(H, W)`` / ``(H, W, 3)``.
        keypoints: ``K`` points ``(x, y)`` in pixels, continuous (the image spans
            ``[0, W] x [0, H]``), as the landmarks task predicts them.
        confidence: ``K`` values in [0, 1]; ``None`` draws every point as confident.
        skeleton: 0-based index pairs of points to join.
        names: ``K`` labels written beside the points, or ``None``.
        threshold: below this confidence a point is a ring and its edges are not drawn.
        radius: point radius in pixels; ``None`` scales with the image (1.5 % of its side).

    Returns:
        A new RGB image.
    """
    canvas = (image if isinstance(image, Image.Image) else Image.fromarray(image)).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    points = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    scores = np.ones(len(points)) if confidence is None else np.asarray(confidence, np.float64)
    if scores.shape != (len(points),):
        raise ValueError(f"{len(scores)} confidences for {len(points)} points")
    r = radius if radius is not None else max(1.5, 0.015 * max(canvas.size))
    sure = scores >= threshold
    for a, b in skeleton:
        if sure[a] and sure[b]:
            (xa, ya), (xb, yb) = points[a] - 0.5, points[b] - 0.5  # PIL puts pixel i's centre at i
            draw.line([(xa, ya), (xb, yb)], fill=EDGE_COLOUR, width=max(1, round(r / 2)))
    for k, (x, y) in enumerate(points - 0.5):
        colour = PALETTE[k % len(PALETTE)]
        box = [x - r, y - r, x + r, y + r]
        if sure[k]:
            draw.ellipse(box, fill=colour, outline=(0, 0, 0))
        else:
            draw.ellipse(box, outline=colour, width=max(1, round(r / 3)))
        if names is not None:
            draw.text((x + r + 1, y - r), str(names[k]), fill=colour)
    return canvas


def draw_landmarks_prediction(
    image: Image.Image | np.ndarray,
    prediction: Mapping[str, Any],
    skeleton: Sequence[Sequence[int]] = (),
    threshold: float = 0.5,
    with_names: bool = False,
) -> Image.Image:
    """Draw one result of the landmarks task's ``predict`` (``keypoints``, ``confidence``).

    Args:
        image: the image the prediction was made on (the file, not the resized input).
        prediction: a dict with ``keypoints`` and ``confidence`` (and ``keypoint_names``).
        skeleton: 0-based index pairs of points to join (the dataset's ``skeleton``).
        threshold: confidence below which a point is drawn as a ring.
        with_names: write the point names.

    Returns:
        A new RGB image.
    """
    return draw_keypoints(
        image,
        prediction["keypoints"],
        prediction.get("confidence"),
        skeleton,
        prediction.get("keypoint_names") if with_names else None,
        threshold,
    )
