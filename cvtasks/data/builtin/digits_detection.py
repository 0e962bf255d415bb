"""The default detection dataset: one to five handwritten digits on each noisy 96x96 canvas.

Seed 001 §6.6 (Fig 6.16 (b)) detects every object of an image, each with its class. Here the
objects are scikit-learn's 8x8 digits (``load_digits``, shipped inside scikit-learn: no
download), each stretched to a random size (side about 12-40 pixels, aspect 0.8-1.25) and blended
at a random position, in a brightness that stands out, onto a canvas of random grey level with a
smooth shading and pixel noise. Digits may touch or overlap a little: a paste is redrawn
elsewhere while its box covers more than :data:`MAX_OVERLAP` of a smaller box already there, so
every digit stays readable. A box is the tight box of its digit's ink (upscaled value >= 1/4).

The digits are split 70/15/15 into train/val/test exactly as the ``digits`` dataset does, so no
test digit is seen in training. The files are written once into the cache as grayscale PNGs plus
one COCO JSON per split (image and annotation ids from 1, as COCO's),

    <root>/digits-det-v1-<train>-<val>-<test>/{train,val,test}/<index>.png
    <root>/digits-det-v1-<train>-<val>-<test>/annotations/{train,val,test}.json

and read back by :class:`~cvtasks.data.coco_detection.CocoDetectionDataModule`. Every canvas is
drawn from its own seed ``(SEED, split, index)``, so a larger split starts with the smaller one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cvtasks.data.builtin.base import WrittenOnFirstUse, builtin_root
from cvtasks.data.builtin.digits_localization import split_digits
from cvtasks.data.cache import write_once
from cvtasks.data.coco_detection import CocoDetectionDataModule
from cvtasks.io import write_json
from cvtasks.registry import DATASETS

VERSION = "digits-det-v1"
"""Folder prefix; bump it whenever the written files would change."""
SEED = 0
SIZE = 96
SPLIT_SIZES = {"train": 2000, "val": 300, "test": 300}
SPLITS = ("train", "val", "test")
MAX_DIGITS = 5
SIDE = (12, 40)  # the side of a pasted digit, in pixels
MAX_OVERLAP = 0.15  # the most of a smaller box another box may cover
_INK = 0.25  # the least ink (of 1) a pixel needs to count inside the box
_TRIES = 30  # placements tried per digit before it is left out


def overlap(a: list[int], b: list[int]) -> float:
    """The share of the smaller of two ``[x, y, width, height]`` boxes that the other covers."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    return width * height / min(a[2] * a[3], b[2] * b[3])


def _ink(digit: np.ndarray, width: int, height: int) -> np.ndarray:
    """The 8x8 ``digit`` (0-16) upscaled to ``height x width`` ink in [0, 1]."""
    image = Image.fromarray((digit * (255.0 / 16.0)).astype(np.uint8))
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR)) / 255.0


def _place(
    rng: np.random.Generator, digit: np.ndarray, boxes: list[list[int]]
) -> tuple[np.ndarray, int, int, list[int]] | None:
    """Ink, top-left corner and tight box of one paste that overlaps ``boxes`` within bounds."""
    for _ in range(_TRIES):
        side = int(rng.integers(SIDE[0], SIDE[1] + 1))
        width, height = side, int(np.clip(round(side * rng.uniform(0.8, 1.25)), *SIDE))
        x0 = int(rng.integers(0, SIZE - width + 1))
        y0 = int(rng.integers(0, SIZE - height + 1))
        ink = _ink(digit, width, height)
        rows = np.flatnonzero((ink >= _INK).any(axis=1))
        cols = np.flatnonzero((ink >= _INK).any(axis=0))
        box = [
            x0 + int(cols[0]),
            y0 + int(rows[0]),
            int(cols[-1] - cols[0] + 1),
            int(rows[-1] - rows[0] + 1),
        ]
        if all(overlap(box, other) <= MAX_OVERLAP for other in boxes):
            return ink, x0, y0, box
    return None


def draw_canvas(
    rng: np.random.Generator, digits: list[np.ndarray]
) -> tuple[np.ndarray, list[list[int]], list[int], np.ndarray]:
    """One ``SIZE x SIZE`` grayscale canvas with ``digits`` (8x8, values 0-16) pasted.

    A digit that finds no place within the overlap bound after a few tries is left out (the
    first one always fits).

    Returns:
        ``(uint8 image, [x, y, width, height] COCO box per pasted digit, the indices into
        digits of those pasted, the ink of every paste as float [SIZE, SIZE] in [0, 1])``.
    """
    level = rng.uniform(0, 110)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    gx, gy = rng.uniform(-30, 30, size=2)
    canvas = level + gx * (xx - 0.5) + gy * (yy - 0.5)
    coverage = np.zeros((SIZE, SIZE))
    boxes: list[list[int]] = []
    pasted: list[int] = []
    for k, digit in enumerate(digits):
        placed = _place(rng, digit, boxes)
        if placed is None:
            continue
        ink, x0, y0, box = placed
        height, width = ink.shape
        brightness = rng.uniform(level + 90, min(255.0, level + 200))  # ink always stands out
        patch = canvas[y0 : y0 + height, x0 : x0 + width]
        canvas[y0 : y0 + height, x0 : x0 + width] = patch * (1 - ink) + brightness * ink
        view = coverage[y0 : y0 + height, x0 : x0 + width]
        np.maximum(view, ink, out=view)
        boxes.append(box)
        pasted.append(k)
    canvas = canvas + rng.normal(0, rng.uniform(4, 16), size=canvas.shape)
    return np.clip(np.round(canvas), 0, 255).astype(np.uint8), boxes, pasted, coverage


def _coco(
    folder: Path, split: str, count: int, images: np.ndarray, targets: np.ndarray, pool: list[int]
) -> dict[str, Any]:
    """Draw a split's canvases into ``folder/split`` and return its COCO dict."""
    (folder / split).mkdir(parents=True)
    coco: dict[str, Any] = {
        "images": [],
        "annotations": [],
        "categories": [{"id": d + 1, "name": str(d)} for d in range(10)],
    }
    for index in range(count):
        rng = np.random.default_rng([SEED, SPLITS.index(split), index])
        sources = [int(s) for s in rng.choice(pool, size=int(rng.integers(1, MAX_DIGITS + 1)))]
        pixels, boxes, pasted, _ = draw_canvas(rng, [images[s] for s in sources])
        file_name = f"{split}/{index:05d}.png"
        Image.fromarray(pixels).save(folder / file_name, format="PNG")
        # ids count from 1, as COCO's: COCOeval takes id 0 for "unmatched"
        image_id = index + 1
        coco["images"].append(
            {"id": image_id, "file_name": file_name, "width": SIZE, "height": SIZE}
        )
        for box, k in zip(boxes, pasted):
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": int(targets[sources[k]]) + 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    return coco


def dataset_dir(counts: dict[str, int]) -> str:
    """The folder name for one set of split sizes."""
    return f"{VERSION}-{counts['train']}-{counts['val']}-{counts['test']}"


def write_digits_detection(
    root: str | os.PathLike[str], counts: dict[str, int] | None = None
) -> Path:
    """Write the dataset under ``root`` unless it is there (atomically, see ``write_once``).

    Args:
        root: the folder to hold the dataset folder.
        counts: canvases per split (default :data:`SPLIT_SIZES`).

    Returns:
        The dataset folder.
    """
    counts = {**SPLIT_SIZES, **(counts or {})}
    if min(counts.values()) < 1:
        raise ValueError(f"digits_detection needs at least one canvas per split, got {counts}")
    final = Path(root).expanduser() / dataset_dir(counts)
    if final.is_dir():
        return final
    images, targets, indices = split_digits()

    def fill(folder: Path) -> None:
        for split in SPLITS:
            coco = _coco(folder, split, counts[split], images, targets, indices[split])
            write_json(folder / "annotations" / f"{split}.json", coco)

    return write_once(final, fill)


class DigitsDetectionDataModule(WrittenOnFirstUse, CocoDetectionDataModule):
    """:class:`CocoDetectionDataModule` over the written canvases, writing them first if needed.

    Args:
        data_root: the folder that holds (or will hold) the dataset folder.
        counts: canvases per split.
        **kwargs: :class:`CocoDetectionDataModule` options.
    """

    def __init__(
        self,
        data_root: str | os.PathLike[str],
        counts: dict[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        self.data_root = Path(data_root).expanduser()
        self.counts = {**SPLIT_SIZES, **(counts or {})}
        annotations = {s: f"annotations/{s}.json" for s in SPLITS}
        folder = self.data_root / dataset_dir(self.counts)
        super().__init__(root=folder, annotations=annotations, **kwargs)

    def write_dataset(self) -> Path:
        """Write the canvases under ``data_root`` unless they are there."""
        return write_digits_detection(self.data_root, self.counts)


@DATASETS.register("digits_detection")
def digits_detection(
    root: str | os.PathLike[str] | None = None,
    *,
    num_train: int = SPLIT_SIZES["train"],
    num_val: int = SPLIT_SIZES["val"],
    num_test: int = SPLIT_SIZES["test"],
    batch_size: int = 16,
    image_size: int = SIZE,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.5, 0.5, 0.5),
    cache_images: bool = True,
    **kwargs: Any,
) -> DigitsDetectionDataModule:
    """The built-in detection dataset (10 digit classes, 1-5 digits per 96x96 canvas).

    Args:
        root: where to keep the dataset folder; ``None`` means ``default_cache_dir() / "data"``.
        num_train: training canvases.
        num_val: validation canvases.
        num_test: test canvases.
        batch_size: samples per batch.
        image_size: output size (the canvases are 96x96).
        mean: normalization mean.
        std: normalization standard deviation.
        cache_images: keep decoded images in memory (about 70 MB decoded at the default sizes).
        **kwargs: other :class:`CocoDetectionDataModule` options (augment, min_visibility, ...).
    """
    return DigitsDetectionDataModule(
        builtin_root(root),
        counts={"train": num_train, "val": num_val, "test": num_test},
        batch_size=batch_size,
        image_size=image_size,
        mean=mean,
        std=std,
        cache_images=cache_images,
        **kwargs,
    )
