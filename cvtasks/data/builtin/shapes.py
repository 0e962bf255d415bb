"""The default segmentation dataset: circles, rectangles and triangles drawn on textured noise.

Each 64x64 image holds one to four shapes of random size, colour, rotation and texture over a
background made of a smooth colour field mixed with stripes or checks, plus pixel noise; later
shapes hide parts of earlier ones. Its mask gives every pixel its class: 0 background,
1 circle, 2 rectangle, 3 triangle. This is per-pixel classification, the semantic segmentation of
seed 001 §6.6, Fig 6.16 (d): the output is "a tensor with width and height dimensions the
same as the input image, and a depth dimension which is the number of classes".

The files are written once into the cache in the ``image_masks`` layout,
``<root>/shapes-v1/{train,val,test}/{images,masks}/<index>.png`` with ``classes.txt``, masks as
palette PNGs, and read back by :class:`~cvtasks.data.image_masks.ImageMaskDataModule` like any
folder a user brings. Every image is drawn from its own seed ``(SHAPES_SEED, split, index)``, so
the files are the same on every machine whatever order they are written in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from cvtasks.data.builtin.base import WrittenOnFirstUse, builtin_root
from cvtasks.data.cache import write_once
from cvtasks.data.image_masks import ImageMaskDataModule
from cvtasks.data.masks import write_mask
from cvtasks.registry import DATASETS

SHAPES_DIR = "shapes-v1"
"""Folder name; bump the version whenever the written files would change."""
SHAPES_CLASSES = ("background", "circle", "rectangle", "triangle")
SHAPES_SIZES = {"train": 1200, "val": 200, "test": 300}
SHAPES_SEED = 0
SIZE = 64
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
_MIN_CONTRAST = 90  # L1 distance (sum over RGB) between a shape's colour and the ground under it
_PLACEMENT_TRIES = 10
_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)  # pixel rows and columns


def _background(rng: np.random.Generator) -> np.ndarray:
    """A float RGB texture: a smooth random colour field blended with stripes or checks."""
    cells = int(rng.integers(2, 6))
    field = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.uint8)
    smooth = np.asarray(
        Image.fromarray(field).resize((SIZE, SIZE), Image.Resampling.BICUBIC), dtype=np.float32
    )
    yy, xx = _YY, _XX
    kind = rng.integers(0, 3)
    if kind == 0:  # stripes at a random angle and period
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(4, 16)
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        pattern = (wave > 0).astype(np.float32)
    elif kind == 1:  # checks
        cell = int(rng.integers(3, 12))
        pattern = ((xx // cell + yy // cell) % 2).astype(np.float32)
    else:  # blotches: thresholded low-frequency noise
        coarse = rng.uniform(0, 1, size=(6, 6)).astype(np.float32)
        up = Image.fromarray(coarse).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        pattern = (np.asarray(up) > 0.5).astype(np.float32)
    tint = rng.uniform(-80, 80, size=3).astype(np.float32)
    strength = rng.uniform(0.3, 1.0)
    return smooth + strength * pattern[..., None] * tint


def _shape_polygon(kind: int, rng: np.random.Generator) -> tuple[str, Any]:
    """``("ellipse", box)`` or ``("polygon", points)`` for class ``kind`` at a random place."""
    radius = rng.uniform(7, 17)
    cx, cy = rng.uniform(radius * 0.6, SIZE - radius * 0.6, size=2)
    if kind == 1:
        return "ellipse", [cx - radius, cy - radius, cx + radius, cy + radius]
    angle = rng.uniform(0, 2 * np.pi)
    if kind == 2:
        half_w, half_h = radius, radius * rng.uniform(0.45, 1.0)
        corners = np.array(
            [[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]]
        )
    else:  # a triangle whose corners sit near 120 degrees apart on a circle
        angles = angle + np.deg2rad(np.array([0.0, 120.0, 240.0]) + rng.uniform(-20, 20, size=3))
        corners = np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius * 1.15
        angle = 0.0
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = corners @ rot.T + [cx, cy]
    return "polygon", [tuple(p) for p in points]


def _rasterize(kind: int, rng: np.random.Generator) -> np.ndarray:
    how, geometry = _shape_polygon(kind, rng)
    layer = Image.new("L", (SIZE, SIZE), 0)
    getattr(ImageDraw.Draw(layer), how)(geometry, fill=1)
    return np.asarray(layer, dtype=bool)


def _place(
    kind: int, rng: np.random.Generator, top: np.ndarray, areas: list[int]
) -> np.ndarray | None:
    """Pixels of a new shape that leaves every earlier one at least half visible, or ``None``.

    ``top`` holds, per pixel, 1 + the index of the shape drawn there last (0: background);
    ``areas`` each earlier shape's full area. Shapes hidden beyond recognition would be labels
    no one could predict.
    """
    for _ in range(_PLACEMENT_TRIES):
        inside = _rasterize(kind, rng)
        if not inside.any():
            continue
        covered = np.bincount(top[inside], minlength=len(areas) + 1)[1:]
        visible = np.bincount(top.ravel(), minlength=len(areas) + 1)[1:]
        if all(v - c >= area / 2 for v, c, area in zip(visible, covered, areas)):
            return inside
    return None


def _colour(rng: np.random.Generator, avoid: list[np.ndarray]) -> np.ndarray:
    """A random colour at least ``_MIN_CONTRAST`` (L1) from each colour in ``avoid``."""
    colour = rng.uniform(0, 255, size=3)
    for _ in range(50):
        if all(np.abs(colour - other).sum() >= _MIN_CONTRAST for other in avoid):
            break
        colour = rng.uniform(0, 255, size=3)
    return colour


def draw_sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw one image and its mask.

    Each shape gets a colour that stands out from the ground it covers and from every shape it
    overlaps, a gentle linear shading, and a place that keeps earlier shapes at least half
    visible; then pixel noise covers the whole image.

    Args:
        rng: the generator; the same state gives the same sample.

    Returns:
        ``(image uint8 [64, 64, 3], mask uint8 [64, 64])`` with mask values 0-3.
    """
    image = _background(rng)
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    top = np.zeros((SIZE, SIZE), dtype=np.int64)
    areas: list[int] = []
    colours: list[np.ndarray] = []
    for _ in range(int(rng.integers(1, 5))):
        kind = int(rng.integers(1, 4))
        inside = _place(kind, rng, top, areas)
        if inside is None:
            continue
        ground = inside & (top == 0)
        avoid = [colours[j - 1] for j in np.unique(top[inside]) if j > 0]
        if ground.any():
            avoid.append(image[ground].mean(axis=0))
        colour = _colour(rng, avoid)
        cy, cx = _YY[inside].mean(), _XX[inside].mean()
        gx, gy = rng.uniform(-1.0, 1.0, size=2)
        shade = gx * (_XX[inside] - cx) + gy * (_YY[inside] - cy)
        image[inside] = colour + shade[:, None]
        mask[inside] = kind
        areas.append(int(inside.sum()))
        colours.append(colour)
        top[inside] = len(areas)
    image += rng.normal(0, rng.uniform(3, 10), size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_shapes(root: str | os.PathLike[str]) -> Path:
    """Write the shapes dataset under ``root`` unless it is already there.

    Written into a temporary folder and renamed into place in one step
    (:func:`~cvtasks.data.cache.write_once`), so a reader never sees half a dataset.

    Args:
        root: the folder to hold ``shapes-v1``.

    Returns:
        ``root/shapes-v1``.
    """
    return write_once(Path(root).expanduser() / SHAPES_DIR, _fill)


def _fill(folder: Path) -> None:
    """Write every split's images, palette masks and ``classes.txt`` into ``folder``."""
    (folder / "classes.txt").write_text("\n".join(SHAPES_CLASSES) + "\n")
    for split, count in SHAPES_SIZES.items():
        (folder / split / "images").mkdir(parents=True)
        (folder / split / "masks").mkdir()
        for index in range(count):
            rng = np.random.default_rng([SHAPES_SEED, _SPLIT_IDS[split], index])
            image, mask = draw_sample(rng)
            Image.fromarray(image).save(folder / split / "images" / f"{index:05d}.png")
            write_mask(folder / split / "masks" / f"{index:05d}.png", mask)


class ShapesDataModule(WrittenOnFirstUse, ImageMaskDataModule):
    """:class:`ImageMaskDataModule` over the written shapes, writing them first if needed.

    Args:
        data_root: the folder that holds (or will hold) ``shapes-v1``.
        **kwargs: :class:`ImageMaskDataModule` / :class:`VisionDataModule` options.
    """

    def __init__(self, data_root: str | os.PathLike[str], **kwargs: Any) -> None:
        self.data_root = Path(data_root).expanduser()
        super().__init__(self.data_root / SHAPES_DIR, **kwargs)

    def write_dataset(self) -> Path:
        """Write ``shapes-v1`` under ``data_root`` unless it is there (:func:`write_shapes`)."""
        return write_shapes(self.data_root)


@DATASETS.register("shapes")
def shapes(
    root: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 16,
    image_size: int = SIZE,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.25, 0.25, 0.25),
    cache_images: bool = True,
    **kwargs: Any,
) -> ShapesDataModule:
    """The built-in shapes dataset (4 classes with background, 64x64, 1200/200/300 images).

    Args:
        root: where to keep ``shapes-v1``; ``None`` means ``default_cache_dir() / "data"``.
        batch_size: samples per batch.
        image_size: output size (the files are 64x64).
        mean: normalization mean.
        std: normalization standard deviation.
        cache_images: keep decoded images and masks in memory (about 30 MB for all splits).
        **kwargs: other :class:`ImageMaskDataModule` options (augment, on_bad_image, ...).

    Returns:
        The DataModule; the files are written by ``prepare_data`` or on first use.
    """
    return ShapesDataModule(
        builtin_root(root),
        batch_size=batch_size,
        image_size=image_size,
        mean=mean,
        std=std,
        cache_images=cache_images,
        **kwargs,
    )
