"""Pictures of box results drawn onto the image with Pillow: one box and its label
(localization), or every detected box in its class colour with true boxes dashed (detection)."""

from __future__ import annotations

import itertools
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
    dashed: bool = False,
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
        dashed: draw the outline as dashes (e.g. a true box beside solid predicted ones).

    Returns:
        A new RGB image; ``image`` is not changed.
    """
    picture = _enlarge(_as_image(image), scale)
    scaled = None if box is None else [float(v) * scale for v in box]
    _BoxPen(picture, width).draw(scaled, label, colour, dashed)
    return picture


class _BoxPen:
    """Draws boxes and tags onto one picture in place, with one outline width and font."""

    def __init__(self, picture: Image.Image, width: int | None = None) -> None:
        self.picture = picture
        self.canvas = ImageDraw.Draw(picture)
        self.width = width or max(1, round(max(picture.size) / 100))
        self.font = ImageFont.load_default(size=max(10, min(picture.size) // 12))

    def draw(
        self, box: Sequence[float] | None, label: str | None, colour: RGB, dashed: bool = False
    ) -> None:
        """Outline ``box`` (pixels of the picture; ``None``: none) and tag it with ``label``."""
        anchor = (0.0, 0.0)
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            if dashed:
                self._dashed_rectangle(x0, y0, x1 - 1, y1 - 1, colour)
            else:
                self.canvas.rectangle([x0, y0, x1 - 1, y1 - 1], outline=colour, width=self.width)
            anchor = (x0, y0)
        if label:
            self._tag(anchor, label, colour)

    def _dashed_rectangle(self, x0: float, y0: float, x1: float, y1: float, colour: RGB) -> None:
        dash = 3 * self.width + 2  # dashes and gaps of equal length, visible at any scale
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        for (ax, ay), (bx, by) in itertools.pairwise(corners):
            length = max(abs(bx - ax), abs(by - ay))
            steps = max(1, int(length // dash))
            for k in range(0, steps, 2):
                t0, t1 = k / steps, min(1.0, (k + 1) / steps)
                start = (ax + (bx - ax) * t0, ay + (by - ay) * t0)
                end = (ax + (bx - ax) * t1, ay + (by - ay) * t1)
                self.canvas.line([start, end], fill=colour, width=self.width)

    def _tag(self, anchor: tuple[float, float], label: str, colour: RGB) -> None:
        draw, picture = self.canvas, self.picture
        left, top, right, bottom = draw.textbbox((0, 0), label, font=self.font)
        tag_w, tag_h = right - left + 4, bottom - top + 4
        x = min(max(0.0, anchor[0]), max(0.0, picture.width - tag_w))
        y = anchor[1] - tag_h if anchor[1] >= tag_h else anchor[1]
        draw.rectangle([x, y, x + tag_w, y + tag_h], fill=colour)
        draw.text((x + 2 - left, y + 2 - top), label, fill=(255, 255, 255), font=self.font)


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


#: class colours (Tableau 10, which stays distinct on photos); class ``k`` gets entry ``k % 10``.
CLASS_COLOURS: tuple[RGB, ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)


def class_colour(label: int) -> RGB:
    """The drawing colour of class ``label`` (the same in every picture of a run)."""
    return CLASS_COLOURS[int(label) % len(CLASS_COLOURS)]


def draw_detections(
    image: Image.Image | np.ndarray,
    detections: Sequence[Mapping[str, Any]],
    truth: Sequence[Mapping[str, Any]] = (),
    scale: int = 1,
) -> Image.Image:
    """Draw every detected box in its class colour with a ``"name score"`` tag.

    Args:
        image: the image the boxes' pixels refer to.
        detections: dicts with ``label``, ``class_name``, ``score`` and ``box``
            (``[x_min, y_min, x_max, y_max]``), as ``DetectionTask.predict_outputs`` lists them.
        truth: true objects, dicts with ``label`` and ``box``: drawn first, dashed, untagged.
        scale: enlarge the picture this many times.

    Returns:
        A new RGB picture; ``image`` is not changed.
    """
    picture = _enlarge(_as_image(image), scale)
    pen = _BoxPen(picture)
    for obj in truth:
        box = [float(v) * scale for v in obj["box"]]
        pen.draw(box, None, class_colour(obj["label"]), dashed=True)
    # the best last, so that its tag stays readable where tags overlap
    for det in sorted(detections, key=lambda d: float(d["score"])):
        box = [float(v) * scale for v in det["box"]]
        label = f"{det['class_name']} {float(det['score']):.2f}"
        pen.draw(box, label, class_colour(det["label"]))
    return picture
