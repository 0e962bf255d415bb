"""Pictures of localization results: a box and its label drawn onto the image with Pillow."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]
TRUTH_COLOUR: RGB = (40, 200, 60)
PREDICTION_COLOUR: RGB = (230, 40, 40)


def _as_image(image: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 HxW or HxWx3 array, got {array.dtype}")
    return Image.fromarray(array).convert("RGB")


def _enlarge(picture: Image.Image, scale: int) -> Image.Image:
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    if scale == 1:
        return picture.copy()
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)


def draw_box(
    image: Image.Image | np.ndarray,
    box: Sequence[float] | None,
    label: str | None = None,
    colour: RGB = PREDICTION_COLOUR,
    width: int | None = None,
    scale: int = 1,
) -> Image.Image:
    """A copy of ``image`` with ``box`` outlined and ``label`` written on a filled tag above it.

    Args:
        image: a Pillow image or a ``uint8`` array (``HxW`` or ``HxWx3``).
        box: ``[x_min, y_min, x_max, y_max]`` in pixels of ``image``; ``None`` draws only the
            label, in the top-left corner (a *nothing* prediction).
        label: the text, e.g. ``"7 0.98"``; ``None`` draws no tag.
        colour: outline and tag colour.
        width: outline width in output pixels (default: about 1/100 of the picture, at least 1).
        scale: enlarge the picture this many times first (nearest neighbour), so that small
            images stay legible.

    Returns:
        A new RGB image; ``image`` is not changed.
    """
    picture = _enlarge(_as_image(image), scale)
    draw = ImageDraw.Draw(picture)
    width = width or max(1, round(max(picture.size) / 100))
    font = ImageFont.load_default(size=max(10, min(picture.size) // 12))
    anchor = (0.0, 0.0)
    if box is not None:
        x0, y0, x1, y1 = (float(v) * scale for v in box)
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=colour, width=width)
        anchor = (x0, y0)
    if label:
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        tag_w, tag_h = right - left + 4, bottom - top + 4
        x = min(max(0.0, anchor[0]), max(0.0, picture.width - tag_w))
        y = anchor[1] - tag_h if anchor[1] >= tag_h else anchor[1]
        draw.rectangle([x, y, x + tag_w, y + tag_h], fill=colour)
        draw.text((x + 2 - left, y + 2 - top), label, fill=(255, 255, 255), font=font)
    return picture


def draw_prediction(
    image: Image.Image | np.ndarray,
    prediction: Mapping[str, Any],
    truth: Mapping[str, Any] | None = None,
    scale: int = 1,
) -> Image.Image:
    """Draw one ``predict`` result of the localization task, and optionally the true box.

    Args:
        image: the original image (the prediction's box is in its pixels).
        prediction: a dict with ``class_name``, ``probability`` and ``box`` (``None`` for
            *nothing*), as ``LocalizationTask.predict_outputs`` returns.
        truth: optional ``{"class_name": ..., "box": ...}`` drawn first, in green.
        scale: enlarge the picture this many times.

    Returns:
        The picture.
    """
    picture = _enlarge(_as_image(image), scale)

    def scaled(box: Sequence[float] | None) -> list[float] | None:
        return None if box is None else [float(v) * scale for v in box]

    if truth is not None:
        picture = draw_box(picture, scaled(truth.get("box")), None, TRUTH_COLOUR)
    label = f"{prediction['class_name']} {float(prediction['probability']):.2f}"
    return draw_box(picture, scaled(prediction.get("box")), label, PREDICTION_COLOUR)
