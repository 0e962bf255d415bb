"""The default landmarks dataset: procedurally drawn faces with five points, as COCO keypoints.

Each image shows one face, an ellipse head with random position, scale, rotation and colours
over a cluttered background, sometimes with hair, ears, eyebrows and occluders. Its five points
are the two eye centres, the nose tip and the two mouth corners (the five-point face layout of
seed 001 §6.6, Fig 6.16 (c)); "left" is the person's left,
on the image's right, as in COCO. A point under an occluder is labelled hidden (``v = 1``).

Faces are drawn four times larger and box-filtered down, so edges carry sub-pixel position. The
files are written once, deterministically (image ``i`` of a split depends only on the seed, the
split and ``i``), into ``<root>/synthetic-faces-v2-<size>px-<train>-<val>-<test>/``:
``images/<split>/<i>.png`` and ``annotations/<split>.json`` in COCO keypoints format, renamed into
place in one step, and read back by :class:`~cvtasks.data.coco_keypoints.CocoKeypointsDataModule`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from cvtasks.data.builtin.base import WrittenOnFirstUse, builtin_root
from cvtasks.data.cache import write_once
from cvtasks.data.coco_keypoints import CocoKeypointsDataModule
from cvtasks.io import write_json
from cvtasks.registry import DATASETS

VERSION = "synthetic-faces-v2"
"""Folder prefix; bump it whenever the drawing would change."""
KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "left_mouth_corner", "right_mouth_corner")
FLIP_PAIRS = (("left_eye", "right_eye"), ("left_mouth_corner", "right_mouth_corner"))
SKELETON = ((1, 2), (1, 3), (2, 3), (3, 4), (3, 5), (4, 5))  # 1-based, as COCO writes it
SPLIT_SIZES = {"train": 4000, "val": 500, "test": 500}
SPLITS = ("train", "val", "test")
SEED = 0
SUPERSAMPLE = 4


def _colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(low, high, size=3))


def _contrasting(
    rng: np.random.Generator, other: tuple[int, ...], distance: float = 100.0
) -> tuple:
    """A random colour at least ``distance`` (RGB, Euclidean) away from ``other``.

    The parts that carry a point (nose tip, lips) are never lost in the skin, so every visible
    label can be learnt from the pixels.
    """
    for _ in range(100):
        colour = _colour(rng)
        if np.linalg.norm(np.subtract(colour, other)) >= distance:
            return colour
    return tuple(255 - c for c in other)


def _ellipse(centre: np.ndarray, axes: tuple[float, float], angle: float, n: int = 48) -> list:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    local = np.stack([axes[0] * np.cos(t), axes[1] * np.sin(t)], axis=1)
    return [tuple(p) for p in _rotate(local, angle) + centre]


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _background(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    top, bottom = np.array(_colour(rng)), np.array(_colour(rng))
    for row in range(0, size, 4):  # a vertical gradient, then clutter
        colour = tuple(int(c) for c in top + (bottom - top) * row / size)
        draw.rectangle([0, row, size, row + 4], fill=colour)
    for _ in range(int(rng.integers(2, 9))):
        box = sorted(rng.uniform(-0.2, 1.2, 2) * size), sorted(rng.uniform(-0.2, 1.2, 2) * size)
        shape = [box[0][0], box[1][0], box[0][1], box[1][1]]
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle(shape, fill=_colour(rng))
        elif kind == 1:
            draw.ellipse(shape, fill=_colour(rng))
        else:
            draw.line(shape, fill=_colour(rng), width=int(rng.integers(2, 12)))


def draw_face(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Draw one face on a ``size x size`` RGB image.

    Returns:
        ``(image uint8[size, size, 3], annotation)`` with ``keypoints`` ``float[5, 2]`` (continuous
        pixel positions), ``flags`` ``int[5]`` (COCO ``v``: 2 visible, 1 occluded) and ``bbox``
        ``[x, y, w, h]`` of the head, clipped to the image.
    """
    s = SUPERSAMPLE
    canvas = Image.new("RGB", (size * s, size * s))
    draw = ImageDraw.Draw(canvas)
    _background(draw, rng, size * s)
    a = rng.uniform(0.26, 0.38) * size  # head half-width: a face crop, as face datasets are
    b = a * rng.uniform(1.1, 1.35)
    angle = math.radians(rng.uniform(-30.0, 30.0))
    eye = np.array([rng.uniform(0.36, 0.48) * a, -rng.uniform(0.12, 0.32) * b])
    nose = np.array([rng.uniform(-0.08, 0.08) * a, rng.uniform(0.06, 0.2) * b])
    mouth = np.array([rng.uniform(0.24, 0.4) * a, rng.uniform(0.4, 0.58) * b])
    local = np.array([[eye[0], eye[1]], [-eye[0], eye[1]], nose, mouth, [-mouth[0], mouth[1]]])
    for _ in range(100):  # place the face so that all five points lie well inside the image
        centre = rng.uniform(0.2, 0.8, 2) * size
        points = _rotate(local, angle) + centre
        if points.min() >= 0.06 * size and points.max() <= 0.94 * size:
            break

    def px(p: np.ndarray) -> np.ndarray:  # continuous image position -> PIL canvas position
        return np.asarray(p) * s - 0.5

    def at(u: float, v: float) -> np.ndarray:  # a position in the face's frame, in the image
        return _rotate(np.array([[u, v]]), angle)[0] + centre

    skin = _colour(rng, 40, 256)
    if rng.random() < 0.5:  # ears
        for side in (-1.0, 1.0):
            draw.polygon(_ellipse(px(at(side * a, 0.0)), (0.25 * a * s, 0.35 * b * s), angle), skin)
    draw.polygon(_ellipse(px(centre), (a * s, b * s), angle), fill=skin)
    if rng.random() < 0.6:  # hair: the top of a slightly larger ellipse
        t = np.linspace(math.pi * 1.18, math.pi * 1.82, 24)  # ends above the brows
        cap = np.stack([1.08 * a * np.cos(t), 1.08 * b * np.sin(t)], axis=1)
        draw.polygon([tuple(px(p)) for p in _rotate(cap, angle) + centre], fill=_colour(rng))
    iris = _colour(rng, 0, 120)
    for k in (0, 1):
        draw.polygon(_ellipse(px(points[k]), (0.16 * a * s, 0.08 * b * s), angle), (240,) * 3)
        r = rng.uniform(0.055, 0.075) * a * s
        draw.ellipse([*(px(points[k]) - r), *(px(points[k]) + r)], fill=iris)
        if rng.random() < 0.7:  # eyebrow
            side = 1.0 if k == 0 else -1.0
            ends = [at(side * eye[0] - 0.15 * a, eye[1] - 0.18 * b)]
            ends.append(at(side * eye[0] + 0.15 * a, eye[1] - 0.18 * b))
            draw.line([tuple(px(e)) for e in ends], fill=iris, width=max(1, int(0.05 * a * s)))
    shade = tuple(int(c * 0.6) for c in skin)
    base = [at(nose[0] - 0.1 * a, nose[1]), at(nose[0] + 0.1 * a, nose[1])]
    tip = [at(nose[0], nose[1] - 0.3 * b)]
    draw.polygon([tuple(px(p)) for p in (*base, *tip)], fill=shade)
    r = 0.045 * a * s
    draw.ellipse([*(px(points[2]) - r), *(px(points[2]) + r)], fill=_contrasting(rng, skin))
    t = np.linspace(0.0, 1.0, 12)
    lips = []
    for bulge in (-rng.uniform(0.03, 0.1), rng.uniform(0.05, 0.16)):  # upper, then lower lip
        mid = np.array([0.0, mouth[1] + bulge * b])
        curve = np.outer((1 - t) ** 2, [mouth[0], mouth[1]]) + np.outer(2 * t * (1 - t), mid)
        lips.append(curve + np.outer(t**2, [-mouth[0], mouth[1]]))
    lip_points = np.concatenate([lips[0], lips[1][::-1]])
    lip_colour = _contrasting(rng, skin)
    draw.polygon([tuple(px(p)) for p in _rotate(lip_points, angle) + centre], fill=lip_colour)

    flags = np.full(5, 2)
    for _ in range(int(rng.random() < 0.35) * int(rng.integers(1, 3))):  # occluders
        half = rng.uniform(0.12, 0.35, 2) * a
        mid = points[rng.integers(5)] + rng.uniform(-0.3, 0.3, 2) * a
        low, high = mid - half, mid + half
        if rng.random() < 0.5:
            draw.rectangle([*px(low), *px(high)], fill=_colour(rng))
            hidden = np.all((points >= low) & (points <= high), axis=1)
        else:
            draw.ellipse([*px(low), *px(high)], fill=_colour(rng))
            hidden = (((points - mid) / half) ** 2).sum(axis=1) <= 1.0
        flags[hidden] = 1

    image = canvas.resize((size, size), Image.Resampling.BOX)
    half_w = math.hypot(a * math.cos(angle), b * math.sin(angle))
    half_h = math.hypot(a * math.sin(angle), b * math.cos(angle))
    x0, y0 = max(0.0, centre[0] - half_w), max(0.0, centre[1] - half_h)
    x1, y1 = min(size, centre[0] + half_w), min(size, centre[1] + half_h)
    bbox = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
    return np.asarray(image), {"keypoints": points, "flags": flags, "bbox": bbox}


def _coco(split: str, count: int, size: int, folder: Path) -> dict[str, Any]:
    """Draw a split's images into ``folder/images/<split>`` and return its COCO dict."""
    images, annotations = [], []
    (folder / "images" / split).mkdir(parents=True)
    for i in range(count):
        rng = np.random.default_rng([SEED, SPLITS.index(split), i])
        pixels, ann = draw_face(rng, size)
        name = f"{split}/{i:05d}.png"
        Image.fromarray(pixels).save(folder / "images" / name, format="PNG")
        # ids count from 1, as COCO's: COCOeval takes id 0 for "unmatched"
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        triples = zip(ann["keypoints"][:, 0], ann["keypoints"][:, 1], ann["flags"])
        keypoints = [v for x, y, f in triples for v in (float(x), float(y), int(f))]
        box = ann["bbox"]
        annotations.append(
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1,
                "keypoints": keypoints,
                "num_keypoints": 5,
                "bbox": box,
                "area": box[2] * box[3],
                "iscrowd": 0,
            }
        )
    category = {
        "id": 1,
        "name": "face",
        "supercategory": "face",
        "keypoints": list(KEYPOINT_NAMES),
        "skeleton": [list(p) for p in SKELETON],
        "flip_pairs": [list(p) for p in FLIP_PAIRS],
    }
    return {"images": images, "annotations": annotations, "categories": [category]}


def dataset_dir(size: int, counts: dict[str, int]) -> str:
    """The folder name for one size and set of split sizes."""
    return f"{VERSION}-{size}px-{counts['train']}-{counts['val']}-{counts['test']}"


def write_synthetic_faces(
    root: str | os.PathLike[str], size: int = 64, counts: dict[str, int] | None = None
) -> Path:
    """Write the faces under ``root`` unless they are already there.

    Written to a temporary folder beside the final one and renamed into place in one step, so a
    reader never sees half a dataset; when two processes race, the first rename wins.

    Args:
        root: the folder to hold the dataset folder.
        size: image side in pixels.
        counts: images per split (default :data:`SPLIT_SIZES`).

    Returns:
        The dataset folder.
    """
    counts = {**SPLIT_SIZES, **(counts or {})}
    if size < 16 or min(counts.values()) < 1:
        raise ValueError(f"synthetic faces need size >= 16 and >= 1 image per split: {counts}")
    final = Path(root).expanduser() / dataset_dir(size, counts)
    if final.is_dir():
        return final

    def fill(folder: Path) -> None:
        for split in SPLITS:
            coco = _coco(split, counts[split], size, folder)
            write_json(folder / "annotations" / f"{split}.json", coco)

    return write_once(final, fill)


class SyntheticFacesDataModule(WrittenOnFirstUse, CocoKeypointsDataModule):
    """:class:`CocoKeypointsDataModule` over the written faces, writing them first if needed.

    Args:
        data_root: the folder that holds (or will hold) the dataset folder.
        render_size: side of the written images.
        counts: images per split.
        **kwargs: :class:`CocoKeypointsDataModule` options.
    """

    def __init__(
        self,
        data_root: str | os.PathLike[str],
        render_size: int = 64,
        counts: dict[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        self.data_root = Path(data_root).expanduser()
        self.render_size = render_size
        self.counts = {**SPLIT_SIZES, **(counts or {})}
        splits = {s: {"annotations": f"annotations/{s}.json", "images": "images"} for s in SPLITS}
        folder = self.data_root / dataset_dir(render_size, self.counts)
        super().__init__(folder, **splits, **kwargs)

    def write_dataset(self) -> Path:
        """Write the faces under ``data_root`` unless they are there."""
        return write_synthetic_faces(self.data_root, self.render_size, self.counts)


@DATASETS.register("synthetic_faces")
def synthetic_faces(
    root: str | os.PathLike[str] | None = None,
    *,
    render_size: int = 64,
    num_train: int = SPLIT_SIZES["train"],
    num_val: int = SPLIT_SIZES["val"],
    num_test: int = SPLIT_SIZES["test"],
    image_size: int = 64,
    batch_size: int = 64,
    cache_images: bool = True,
    **kwargs: Any,
) -> SyntheticFacesDataModule:
    """The built-in synthetic faces (5 points), written into the cache on first use.

    Args:
        root: where to keep the dataset folder; ``None`` means ``default_cache_dir() / "data"``.
        render_size: side of the written images.
        num_train: training images.
        num_val: validation images.
        num_test: test images.
        image_size: network input size.
        batch_size: samples per batch.
        cache_images: keep decoded images in memory (about 12 kB each at 64 px).
        **kwargs: other :class:`CocoKeypointsDataModule` options (augment, ...).
    """
    return SyntheticFacesDataModule(
        builtin_root(root),
        render_size=render_size,
        counts={"train": num_train, "val": num_val, "test": num_test},
        image_size=image_size,
        batch_size=batch_size,
        cache_images=cache_images,
        **kwargs,
    )
