"""Keypoint samples, the albumentations keypoint transform and the dataset that reads them.

Format-neutral: a reader (COCO JSON: :mod:`cvtasks.data.coco_keypoints`) produces
:class:`KeypointSample` objects; :class:`KeypointDataset` decodes the image, optionally crops it
to the object's box, and runs :class:`KeypointTransform`, which moves points and box with the
image and swaps left/right points after a mirroring.

A sample of the dataset is a dict (the landmarks batch of docs/architecture.md):

* ``image``: ``float[3, H, W]`` normalized;
* ``keypoints``: ``float[K, 2]`` in [0, 1] of the output image (``x`` by width, ``y`` by height);
* ``visible``: ``bool[K]``: labelled (COCO ``v >= min_visibility``) and inside the frame;
* ``box``: ``float[4]`` the object's box ``(cx, cy, w, h)`` normalized, moved with the image;
* ``orig_size``: ``int64[2]`` ``(height, width)`` of the frame before transforms (the image, or
  its crop), to turn predictions back into pixels; ``offset``: ``float[2]`` the frame's
  ``(x, y)`` in the image file;
* ``path``: the image file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import albumentations as A
import numpy as np
import torch

from cvtasks.data.annotations import AnnotationError
from cvtasks.data.image_folder import ImageFolderDataset
from cvtasks.data.images import load_or_skip, orientation_note

# Transforms that mirror the image, so that a person's left point becomes the right one; D4's
# reflections by group element name (albumentations 2.0.8).
MIRRORS = frozenset({"HorizontalFlip", "VerticalFlip", "Transpose"})
D4_MIRRORS = frozenset({"v", "h", "t", "hvt"})


def resolve_pairs(
    spec: Sequence[Sequence[int | str]], names: Sequence[str], where: str, base: int = 0
) -> list[tuple[int, int]]:
    """Index pairs from pairs of point names or indices (``base``: 0, or 1 for COCO skeletons).

    Raises:
        AnnotationError: a pair that is not two points, or an unknown name or index (``where``
            names the file and field, or the config key).
    """
    pairs = []
    for pair in spec:
        if isinstance(pair, (str, bytes)) or len(pair) != 2:
            raise AnnotationError(f"{where}: {pair!r} is not a pair of points")
        indices = []
        for item in pair:
            if isinstance(item, str):
                if item not in names:
                    raise AnnotationError(f"{where}: no point named {item!r} in {list(names)}")
                indices.append(names.index(item))
            elif isinstance(item, int) and base <= item < len(names) + base:
                indices.append(item - base)
            else:
                raise AnnotationError(
                    f"{where}: {item!r} is not a point ({len(names)} points, first index {base})"
                )
        pairs.append((indices[0], indices[1]))
    return pairs


def infer_flip_pairs(names: Sequence[str]) -> list[tuple[int, int]]:
    """``(left, right)`` pairs of names equal but for ``left``/``right`` (any case)."""
    lower = [n.lower() for n in names]
    pairs = []
    for i, name in enumerate(lower):
        if "left" in name and name.replace("left", "right") in lower:
            pairs.append((i, lower.index(name.replace("left", "right"))))
    return pairs


def check_flip_pairs(pairs: Sequence[tuple[int, int]], where: str) -> list[tuple[int, int]]:
    """Refuse a point that would swap with two others or with itself."""
    seen: set[int] = set()
    for left, right in pairs:
        if left == right or left in seen or right in seen:
            raise AnnotationError(f"{where}: point {left} or {right} is in more than one pair")
        seen.update((left, right))
    return [tuple(p) for p in pairs]


@dataclass(frozen=True)
class KeypointSample:
    """One annotated object: its image file, points, COCO visibility flags and box.

    Attributes:
        path: the image file.
        keypoints: ``float32[K, 2]`` pixel positions ``(x, y)``.
        flags: ``int64[K]`` COCO visibility (0 not labelled, 1 hidden, 2 visible).
        box: ``(x, y, w, h)`` in pixels, or ``None`` when the annotation has no usable bbox.
        image_id: the COCO image id.
        size: ``(width, height)`` the file says the image has, or ``None``.
    """

    path: str
    keypoints: np.ndarray
    flags: np.ndarray
    box: tuple[float, float, float, float] | None
    image_id: int
    size: tuple[int, int] | None = None


class KeypointTransform:
    """An albumentations pipeline that moves points and a box with the image.

    The pipeline must be built with ``keypoint_params=A.KeypointParams(format="xy",
    remove_invisible=False)`` and ``save_applied_params=True`` (see :func:`keypoint_compose_kwargs`)
    and end with ``Resize`` (as :func:`cvtasks.data.transforms.build_pipeline` does).

    Conventions: albumentations' flips and affine warps treat pixel ``i`` as sitting at ``i``,
    its resizes scale coordinates by the size ratio (checked against rendered dots in the
    tests). Points go in as ``x - 0.5`` so that flips and warps are exact, and the final resize
    is corrected; crop-and-resize transforms before it may be off by up to half an output pixel.
    After an odd number of mirrorings (read from the applied transforms that the pipeline
    records; albumentations 2.0.8 has no keypoint label mapping of its own) each flip pair swaps
    its points and their visibility. Points pushed out of the frame stay, marked invisible.

    Args:
        pipeline: the albumentations pipeline.
        flip_pairs: ``(left, right)`` index pairs.
    """

    def __init__(self, pipeline: A.Compose, flip_pairs: Sequence[tuple[int, int]] = ()) -> None:
        self.pipeline = pipeline
        self.flip_pairs = [tuple(p) for p in flip_pairs]

    def set_random_seed(self, seed: int) -> None:
        """Seed the pipeline (DataLoader workers call this)."""
        self.pipeline.set_random_seed(seed)

    def __call__(
        self,
        image: np.ndarray,
        keypoints: np.ndarray,
        visible: np.ndarray,
        box: tuple[float, float, float, float],
    ) -> dict[str, torch.Tensor]:
        """Transform one image with its points ``[K, 2]`` (pixels), ``visible [K]`` and box.

        Returns:
            ``image`` ``float[3, H, W]``, ``keypoints`` ``float[K, 2]`` normalized to the output,
            ``visible`` ``bool[K]`` and ``box`` ``float[4]`` (cx, cy, w, h normalized).
        """
        x, y, w, h = box
        corners = np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]], dtype=np.float64)
        points = np.concatenate([np.asarray(keypoints, np.float64), corners]) - 0.5
        out = self.pipeline(image=image, keypoints=points)
        height, width = out["image"].shape[-2:]
        scale = np.ones(2)
        mirrored = False
        for name, params in out["applied_transforms"]:
            if name == "Resize":
                in_h, in_w = params["shape"][:2]
                scale = np.array([width / in_w, height / in_h])
            mirrored ^= name in MIRRORS or (name == "D4" and params["group_element"] in D4_MIRRORS)
        moved = (np.asarray(out["keypoints"], np.float64)[:, :2] + 0.5 * scale) / [width, height]
        points, corners = moved[:-4], moved[-4:]
        visible = np.asarray(visible, dtype=bool).copy()
        if mirrored:
            for left, right in self.flip_pairs:
                points[[left, right]] = points[[right, left]]
                visible[[left, right]] = visible[[right, left]]
        inside = ((points >= 0.0) & (points <= 1.0)).all(axis=1)
        low, high = corners.min(axis=0), corners.max(axis=0)
        return {
            "image": out["image"],
            "keypoints": torch.from_numpy(points.astype(np.float32)),
            "visible": torch.from_numpy(visible & inside),
            "box": torch.tensor([*(low + high) / 2, *(high - low)], dtype=torch.float32),
        }


def keypoint_compose_kwargs() -> dict[str, Any]:
    """``A.Compose`` keywords that :class:`KeypointTransform` needs."""
    return {
        "keypoint_params": A.KeypointParams(format="xy", remove_invisible=False),
        "save_applied_params": True,
    }


def sample_box(sample: KeypointSample) -> tuple[float, float, float, float]:
    """The sample's box, or the box of its labelled points when it has none."""
    if sample.box is not None:
        return sample.box
    labelled = sample.keypoints[sample.flags > 0]
    low, high = labelled.min(axis=0), labelled.max(axis=0)
    return (float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1]))


def crop_window(
    box: tuple[float, float, float, float], image_size: tuple[int, int], padding: float
) -> tuple[int, int, int, int]:
    """Integer window ``(x0, y0, x1, y1)`` around a box grown by ``padding``, inside the image."""
    x, y, w, h = box
    cx, cy, half_w, half_h = x + w / 2, y + h / 2, w * padding / 2, h * padding / 2
    width, height = image_size
    x0, y0 = max(0, int(np.floor(cx - half_w))), max(0, int(np.floor(cy - half_h)))
    x1, y1 = min(width, int(np.ceil(cx + half_w))), min(height, int(np.ceil(cy + half_h)))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def empty_keypoint_targets(num_keypoints: int) -> dict[str, torch.Tensor]:
    """The targets of a batch of no image: points, visibility, box, frame size and offset."""
    k = num_keypoints
    return {
        "keypoints": torch.empty(0, k, 2),
        "visible": torch.empty(0, k, dtype=torch.bool),
        "box": torch.empty(0, 4),
        "orig_size": torch.empty(0, 2, dtype=torch.int64),
        "offset": torch.empty(0, 2),
    }


class KeypointDataset(ImageFolderDataset):
    """Keypoint samples read with :func:`~cvtasks.data.images.read_image` and transformed.

    Args:
        samples: the annotated objects.
        transform: moves image, points and box together.
        on_bad_image: ``"error"`` or ``"skip"`` (see :class:`ImageFolderDataset`).
        cache_images: keep decoded images in memory.
        crop_to_box: cut each object's box, grown by ``box_padding``, out of its image first
            (for files with several objects per image, e.g. COCO person keypoints).
        box_padding: how much larger than the box the crop is.
        min_visibility: the least COCO ``v`` flag of a point that counts (2: only points marked
            visible; 1: every labelled point, hidden ones included).
    """

    def __init__(
        self,
        samples: Sequence[KeypointSample],
        transform: KeypointTransform,
        on_bad_image: str = "error",
        cache_images: bool = False,
        crop_to_box: bool = False,
        box_padding: float = 1.25,
        min_visibility: int = 2,
    ) -> None:
        super().__init__([(s.path, 0) for s in samples], transform, on_bad_image, cache_images)
        self.keypoint_samples = list(samples)
        self.crop_to_box = crop_to_box
        self.box_padding = box_padding
        self.min_visibility = min_visibility

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        image = load_or_skip(self.load_image, index, self.on_bad_image)
        if image is None:
            return None
        sample = self.keypoint_samples[index]
        height, width = image.shape[:2]
        if sample.size is not None and sample.size != (width, height):
            raise ValueError(
                f"{sample.path}: the image is {width}x{height} but its COCO entry (image_id "
                f"{sample.image_id}) says 'width' x 'height' = {sample.size[0]}x{sample.size[1]}"
                + orientation_note(sample.path)
            )
        points, box = sample.keypoints, sample_box(sample)
        x0 = y0 = 0
        if self.crop_to_box:
            x0, y0, x1, y1 = crop_window(box, (width, height), self.box_padding)
            image = image[y0:y1, x0:x1]
            points = points - np.array([x0, y0], dtype=np.float32)
            box = (box[0] - x0, box[1] - y0, box[2], box[3])
        out = self.transform(image, points, sample.flags >= self.min_visibility, box)
        out["orig_size"] = torch.tensor(image.shape[:2], dtype=torch.int64)
        out["offset"] = torch.tensor([x0, y0], dtype=torch.float32)
        out["path"] = sample.path
        return out
