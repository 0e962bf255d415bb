"""Pictures of segmentation: class masks coloured and laid over their images (Pillow, NumPy).

Colours are Pascal VOC's palette (:func:`cvtasks.data.masks.mask_palette`): class 1 dark
red, 2 dark green, 3 olive, ... By default background (0) and ignored pixels (255) stay
uncoloured, so the picture shows the objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cvtasks.data.masks import mask_palette
from cvtasks.ops.masks import IGNORE_INDEX

TRANSPARENT = (0, IGNORE_INDEX)


def _mask_array(mask: Any) -> np.ndarray:
    array = np.asarray(mask.cpu() if hasattr(mask, "cpu") else mask)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"a mask must be an HxW array of class indices, got {array.dtype} {array.shape}"
        )
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(f"mask values must be 0-255, got {array.min()}..{array.max()}")
    return array.astype(np.uint8)


def _image_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 HxW or HxWx3 image, got {array.dtype} {array.shape}")
    return np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array[..., :3]


def colorize_mask(mask: Any, palette: np.ndarray | None = None) -> Image.Image:
    """The mask as an RGB picture, each class in its palette colour.

    Args:
        mask: ``[H, W]`` class indices (NumPy array or tensor).
        palette: ``uint8 [256, 3]`` colours; default :func:`mask_palette`.
    """
    colours = mask_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
    return Image.fromarray(colours[_mask_array(mask)])


def overlay_mask(
    image: Image.Image | np.ndarray,
    mask: Any,
    alpha: float = 0.5,
    palette: np.ndarray | None = None,
    transparent: Sequence[int] = TRANSPARENT,
) -> Image.Image:
    """``image`` with every pixel of a coloured class blended with that class's colour.

    Args:
        image: a Pillow image or ``uint8`` array, ``HxW`` or ``HxWx3``.
        mask: ``[H, W]`` class indices of the same size.
        alpha: weight of the class colour, in [0, 1].
        palette: ``uint8 [256, 3]`` colours; default :func:`mask_palette`.
        transparent: classes left uncoloured (default background and ignore).

    Returns:
        A new RGB image.

    Raises:
        ValueError: sizes differ, ``alpha`` is outside [0, 1], or the inputs are malformed.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    pixels = _image_array(image).astype(np.float32)
    labels = _mask_array(mask)
    if labels.shape != pixels.shape[:2]:
        raise ValueError(f"mask is {labels.shape} (HxW) but the image is {pixels.shape[:2]}")
    colours = mask_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
    coloured = ~np.isin(labels, list(transparent))[..., None]
    blended = (1 - alpha) * pixels + alpha * colours[labels].astype(np.float32)
    out = np.where(coloured, blended, pixels)
    return Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8))


def draw_segmentation(
    image: Image.Image | np.ndarray,
    predicted: Any,
    truth: Any | None = None,
    class_names: Sequence[str] | None = None,
    alpha: float = 0.5,
    scale: int = 1,
) -> Image.Image:
    """Side-by-side panels: the image, the prediction over it, and the truth over it if given.

    A legend row below names the classes that appear (in either mask) in their colours.

    Args:
        image: the picture, ``HxW`` or ``HxWx3`` ``uint8``.
        predicted: predicted class indices ``[H, W]``.
        truth: true class indices ``[H, W]`` (255 = ignore), or ``None``.
        class_names: names for the legend (default: the indices).
        alpha: weight of the class colours.
        scale: enlarge every panel this many times (nearest neighbour) so small images read.

    Returns:
        A new RGB image.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    base = Image.fromarray(_image_array(image))
    panels = [base, overlay_mask(base, predicted, alpha)]
    masks = [_mask_array(predicted)]
    if truth is not None:
        panels.append(overlay_mask(base, truth, alpha))
        masks.append(_mask_array(truth))
    width, height = base.width * scale, base.height * scale
    panels = [p.resize((width, height), Image.Resampling.NEAREST) for p in panels]
    present = sorted(set().union(*(np.unique(m).tolist() for m in masks)) - set(TRANSPARENT))
    font = ImageFont.load_default(size=max(10, min(height // 8, 16)))
    row = font.size + 6
    canvas = Image.new("RGB", (width * len(panels), height + row * max(1, len(present))), "white")
    for i, panel in enumerate(panels):
        canvas.paste(panel, (i * width, 0))
    draw = ImageDraw.Draw(canvas)
    colours = mask_palette()
    for j, label in enumerate(present):
        top = height + j * row + 3
        draw.rectangle([4, top, 4 + font.size, top + font.size], fill=tuple(colours[label]))
        name = class_names[label] if class_names and label < len(class_names) else str(label)
        draw.text((10 + font.size, top), name, fill="black", font=font)
    return canvas
