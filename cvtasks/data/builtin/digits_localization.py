"""The default localization dataset: handwritten digits pasted onto noisy 64x64 canvases.

Seed 001 §6.6 ("Object Localization") localizes one object per image, or
*nothing*. Here the objects are scikit-learn's 8x8 digits (``load_digits``, shipped inside
scikit-learn: no download), each stretched to a random size (16-40 pixels wide, aspect 0.8-1.25)
and blended at a random position, in a random brightness that stands out, onto a canvas of
random grey level with a smooth shading and pixel noise. One image in ten holds no digit. The
box is the tight box of the visible ink (upscaled value >= 1/4 of full ink).

The digits are first split 70/15/15 into train/val/test, stratified by class exactly as the
``digits`` dataset does, so no test digit is ever seen in training; each digit is pasted once
(1397 train, 300 val and 300 test images with the empty ones): training augmentations move and
rescale the pastes anew every epoch. The files are written once into the cache as grayscale PNGs
plus one COCO JSON per split,

    <root>/digits-loc-v2/{train,val,test}/<index>.png
    <root>/digits-loc-v2/annotations/{train,val,test}.json

and read back by :class:`~cvtasks.data.coco_boxes.CocoBoxesDataModule` like any COCO set a user
brings. Every image is drawn from its own seed ``(DIGITS_LOC_SEED, split, index)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cvtasks.data.builtin.base import WrittenOnFirstUse, builtin_root
from cvtasks.data.builtin.digits import DIGITS_SEED, DIGITS_SPLIT
from cvtasks.data.cache import write_once
from cvtasks.data.coco_boxes import CocoBoxesDataModule
from cvtasks.data.image_folder import stratified_split
from cvtasks.registry import DATASETS

DIGITS_LOC_DIR = "digits-loc-v2"
"""Folder name; bump the version whenever the written files would change."""
DIGITS_LOC_SEED = 0
SIZE = 64
COPIES = {"train": 1, "val": 1, "test": 1}  # pastes of each source digit per split
EMPTY_SHARE = 0.1  # share of images with nothing in them
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
_INK = 0.25  # the least ink (of 1) a pixel needs to count inside the box


def draw_canvas(
    rng: np.random.Generator, digit: np.ndarray | None
) -> tuple[np.ndarray, list[int] | None]:
    """One ``SIZE x SIZE`` grayscale image, with ``digit`` (8x8, values 0-16) pasted or not.

    Returns:
        ``(uint8 image, [x, y, width, height] COCO box or None)``.
    """
    level = rng.uniform(0, 110)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    gx, gy = rng.uniform(-30, 30, size=2)
    canvas = level + gx * (xx - 0.5) + gy * (yy - 0.5)
    box = None
    if digit is not None:
        width = int(rng.integers(16, 41))
        height = int(np.clip(round(width * rng.uniform(0.8, 1.25)), 14, 48))
        x0 = int(rng.integers(0, SIZE - width + 1))
        y0 = int(rng.integers(0, SIZE - height + 1))
        ink_image = Image.fromarray((digit * (255.0 / 16.0)).astype(np.uint8))
        ink = np.asarray(ink_image.resize((width, height), Image.Resampling.BILINEAR)) / 255.0
        brightness = rng.uniform(level + 90, min(255.0, level + 200))  # ink always stands out
        patch = canvas[y0 : y0 + height, x0 : x0 + width]
        canvas[y0 : y0 + height, x0 : x0 + width] = patch * (1 - ink) + brightness * ink
        rows = np.flatnonzero((ink >= _INK).any(axis=1))
        cols = np.flatnonzero((ink >= _INK).any(axis=0))
        box = [
            x0 + int(cols[0]),
            y0 + int(rows[0]),
            int(cols[-1] - cols[0] + 1),
            int(rows[-1] - rows[0] + 1),
        ]
    canvas = canvas + rng.normal(0, rng.uniform(4, 16), size=canvas.shape)
    return np.clip(np.round(canvas), 0, 255).astype(np.uint8), box


def split_digits() -> tuple[np.ndarray, np.ndarray, dict[str, list[int]]]:
    """scikit-learn's digits and their train/val/test indices, split as the ``digits`` dataset.

    Returns:
        ``(images [N, 8, 8] with values 0-16, targets [N], {split: sorted indices})``.
    """
    from sklearn.datasets import load_digits  # slow to import; only needed on the first run

    digits = load_digits()
    by_class = {str(c): [int(i) for i in np.flatnonzero(digits.target == c)] for c in range(10)}
    carved = stratified_split(by_class, DIGITS_SPLIT, DIGITS_SEED)
    indices = {
        split: sorted(i for group in carved[split].values() for i in group) for split in carved
    }
    return digits.images, digits.target, indices


def write_split(
    folder: Path, split: str, images: np.ndarray, targets: np.ndarray, indices: list[int]
) -> None:
    """Write one split's PNGs into ``folder/split``, its COCO file into ``folder/annotations``."""
    sources = [i for i in indices for _ in range(COPIES[split])]
    empty = round(len(sources) * EMPTY_SHARE / (1 - EMPTY_SHARE))
    order = np.random.default_rng([DIGITS_LOC_SEED, _SPLIT_IDS[split]]).permutation(
        len(sources) + empty
    )
    plan = [sources[k] if k < len(sources) else None for k in order]
    (folder / split).mkdir(parents=True)
    coco: dict[str, Any] = {
        "images": [],
        "annotations": [],
        "categories": [{"id": d + 1, "name": str(d)} for d in range(10)],
    }
    for index, source in enumerate(plan):
        rng = np.random.default_rng([DIGITS_LOC_SEED, _SPLIT_IDS[split], index])
        pixels, box = draw_canvas(rng, None if source is None else images[source])
        file_name = f"{split}/{index:05d}.png"
        Image.fromarray(pixels).save(folder / file_name, format="PNG")
        # ids count from 1, as COCO's: COCOeval takes id 0 for "unmatched"
        coco["images"].append(
            {"id": index + 1, "file_name": file_name, "width": SIZE, "height": SIZE}
        )
        if box is not None:
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": index + 1,
                    "category_id": int(targets[source]) + 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    (folder / "annotations").mkdir(exist_ok=True)
    (folder / "annotations" / f"{split}.json").write_text(json.dumps(coco), encoding="utf-8")


def write_digits_localization(root: str | os.PathLike[str]) -> Path:
    """Write the dataset under ``root`` unless it is there (atomically, as ``write_digits``).

    Returns:
        ``root/digits-loc-v2``.
    """
    final = Path(root).expanduser() / DIGITS_LOC_DIR
    if final.is_dir():
        return final
    images, targets, indices = split_digits()

    def fill(folder: Path) -> None:
        for split in ("train", "val", "test"):
            write_split(folder, split, images, targets, indices[split])

    return write_once(final, fill)


class DigitsLocalizationDataModule(WrittenOnFirstUse, CocoBoxesDataModule):
    """:class:`CocoBoxesDataModule` over the written dataset, writing it first if needed.

    Args:
        data_root: the folder that holds (or will hold) ``digits-loc-v2``.
        **kwargs: :class:`CocoBoxesDataModule` options.
    """

    def __init__(self, data_root: str | os.PathLike[str], **kwargs: Any) -> None:
        self.data_root = Path(data_root).expanduser()
        folder = self.data_root / DIGITS_LOC_DIR
        annotations = {s: f"annotations/{s}.json" for s in ("train", "val", "test")}
        super().__init__(root=folder, annotations=annotations, **kwargs)

    def write_dataset(self) -> Path:
        """Write ``digits-loc-v2`` under ``data_root`` unless it is there."""
        return write_digits_localization(self.data_root)


@DATASETS.register("digits_localization")
def digits_localization(
    root: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 64,
    image_size: int = SIZE,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.5, 0.5, 0.5),
    cache_images: bool = True,
    **kwargs: Any,
) -> DigitsLocalizationDataModule:
    """The built-in localization dataset (10 digit classes plus nothing, 64x64).

    Args:
        root: where to keep ``digits-loc-v2``; ``None`` means ``default_cache_dir() / "data"``.
        batch_size: samples per batch.
        image_size: output size (the canvases are 64x64).
        mean: normalization mean.
        std: normalization standard deviation.
        cache_images: keep decoded images in memory (about 42 MB decoded).
        **kwargs: other :class:`CocoBoxesDataModule` options (augment, out_of_frame, ...).
    """
    return DigitsLocalizationDataModule(
        builtin_root(root),
        batch_size=batch_size,
        image_size=image_size,
        mean=mean,
        std=std,
        cache_images=cache_images,
        **kwargs,
    )
