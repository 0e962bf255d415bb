"""Pictures of siamese results: a pair with its distance and verdict, a gallery search strip.

Images may be Pillow images, ``uint8`` arrays (``HxW`` or ``HxWx3``) or normalized float tensors
``[3, H, W]`` straight from a batch (give the ``mean`` and ``std`` they were normalized with).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]
RIGHT: RGB = (40, 170, 60)
WRONG: RGB = (210, 40, 40)
UNKNOWN: RGB = (90, 90, 90)
QUERY: RGB = (40, 90, 210)
ImageLike = Image.Image | np.ndarray | torch.Tensor


def to_picture(
    image: ImageLike,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Image.Image:
    """An RGB Pillow image from a Pillow image, a ``uint8`` array or a normalized tensor.

    Args:
        image: the image; a float tensor ``[3, H, W]`` is un-normalized with ``mean`` and ``std``
            (pixel values in [0, 1] before normalization), then scaled to 0-255.
        mean: per-channel normalization mean of a tensor (default 0).
        std: per-channel normalization standard deviation of a tensor (default 1).
    """
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        x = image.detach().float().cpu()
        if x.ndim != 3 or x.shape[0] not in (1, 3):
            raise ValueError(f"expected a [3, H, W] tensor, got shape {tuple(x.shape)}")
        m = torch.tensor(mean if mean is not None else (0.0,) * 3)[:, None, None]
        s = torch.tensor(std if std is not None else (1.0,) * 3)[:, None, None]
        x = (x * s + m).clamp(0, 1).expand(3, -1, -1)
        return Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 HxW or HxWx3 array, got {array.dtype}")
    return Image.fromarray(array).convert("RGB")


def verdict(distance: float, threshold: float | None) -> bool | None:
    """``True`` ("same") when ``distance <= threshold``; ``None`` without a threshold."""
    return None if threshold is None else bool(distance <= threshold)


def _tile(picture: Image.Image, scale: int, caption: str, colour: RGB) -> Image.Image:
    """``picture`` enlarged ``scale`` times, framed, with a caption bar below it."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    big = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    font = ImageFont.load_default(size=max(10, big.width // 9))
    lines = caption.split("\n")
    line_h = font.getbbox("Ag")[3] + 2
    width = max(big.width, *(round(font.getlength(line)) + 4 for line in lines))
    tile = Image.new("RGB", (width + 4, big.height + 4 + line_h * len(lines) + 4), colour)
    tile.paste(big, (2, 2))
    draw = ImageDraw.Draw(tile)
    for k, line in enumerate(lines):
        draw.text((4, big.height + 5 + k * line_h), line, fill=(255, 255, 255), font=font)
    return tile


def _row(tiles: Sequence[Image.Image], gap: int = 4) -> Image.Image:
    width = sum(t.width for t in tiles) + gap * (len(tiles) - 1)
    strip = Image.new("RGB", (width, max(t.height for t in tiles)), (255, 255, 255))
    x = 0
    for t in tiles:
        strip.paste(t, (x, 0))
        x += t.width + gap
    return strip


def draw_pair(
    image_a: ImageLike,
    image_b: ImageLike,
    distance: float,
    threshold: float | None = None,
    same: bool | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    scale: int = 3,
) -> Image.Image:
    """Two images side by side, captioned with their distance and the verdict at ``threshold``.

    Args:
        image_a: the anchor image.
        image_b: the other image.
        distance: their embedding distance.
        threshold: the stored threshold; ``None`` shows no verdict.
        same: the truth, when known: the frame is green when the verdict is right, red when it is
            wrong, grey when either is unknown.
        mean: normalization mean of tensor images.
        std: normalization standard deviation of tensor images.
        scale: enlargement (nearest neighbour) so that small images stay legible.

    Returns:
        A new RGB image.
    """
    called = verdict(distance, threshold)
    colour = UNKNOWN if called is None or same is None else (RIGHT if called == same else WRONG)
    text = f"d={distance:.3f}"
    if called is not None:
        text += f" {'<=' if called else '>'} {threshold:.3f}\n{'same' if called else 'different'}"
    if same is not None:
        text += f" (truth: {'same' if same else 'different'})"
    pair = _row([to_picture(image_a, mean, std), to_picture(image_b, mean, std)], gap=0)
    return _tile(pair, scale, text, colour)


def draw_gallery(
    query: ImageLike,
    hits: Sequence[dict[str, Any]],
    gallery_images: Sequence[ImageLike],
    query_identity: Any = None,
    threshold: float | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    scale: int = 2,
) -> Image.Image:
    """A strip: the query, then its nearest gallery identities, nearest first.

    Args:
        query: the query image.
        hits: the search results of one query, ``[{"identity", "distance", "index"}, ...]`` as
            :func:`cvtasks.tasks.siamese.gallery_search` returns them.
        gallery_images: the gallery's images, indexed by each hit's ``index``.
        query_identity: the query's true identity, when known: hits of that identity are framed
            green, others red.
        threshold: the stored threshold: hits beyond it are captioned "far".
        mean: normalization mean of tensor images.
        std: normalization standard deviation of tensor images.
        scale: enlargement of every image.

    Returns:
        A new RGB image.
    """
    head = "query" if query_identity is None else f"query\n{query_identity}"
    tiles = [_tile(to_picture(query, mean, std), scale, head, QUERY)]
    for rank, hit in enumerate(hits, start=1):
        known = query_identity is not None
        colour = (RIGHT if hit["identity"] == query_identity else WRONG) if known else UNKNOWN
        far = threshold is not None and hit["distance"] > threshold
        caption = f"#{rank} {hit['identity']}\nd={hit['distance']:.3f}{' far' if far else ''}"
        picture = to_picture(gallery_images[hit["index"]], mean, std)
        tiles.append(_tile(picture, scale, caption, colour))
    return _row(tiles)
