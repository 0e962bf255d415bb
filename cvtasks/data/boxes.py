"""Single-object box samples, their dataset and the DataModule base every box reader shares.

A reader (COCO JSON, VOC XML) turns its files into :class:`BoxSample` records (image path,
label, box in pixels or ``None`` for *nothing*, declared size); :class:`BoxDataModule` splits,
augments and batches them into the localization batch of docs/architecture.md:

    image float[B,3,H,W], label int64[B] (0 = nothing), box float[B,4] (cx, cy, w, h in [0,1]),
    orig_size int64[B,2] (height, width of the file), index int64[B] (sample index in its split)

Augmentations move the box with the image (albumentations ``BboxParams``). A box pushed out of
the frame is clipped to it (``out_of_frame="clip"``), or the sample becomes *nothing* when less
than ``min_visibility`` of the box stays visible (``out_of_frame="nothing"``); a box pushed out
entirely always leaves *nothing*.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import albumentations as A
import numpy as np
import torch

from cvtasks.data.annotated import AnnotatedDataModule, AnnotatedImages
from cvtasks.data.datamodule import check_choice
from cvtasks.data.images import load_or_skip

MULTIPLE_OBJECTS = ("largest", "error")
OUT_OF_FRAME = ("clip", "nothing")

Box = tuple[float, float, float, float]


class BoxSample(NamedTuple):
    """One image and its single object.

    Attributes:
        path: the image file.
        label: 0 for *nothing*, 1..C for an object class.
        box: ``(x_min, y_min, x_max, y_max)`` in pixels of the file, ``None`` for *nothing*.
        size: ``(height, width)`` the annotations declare for the file.
        source: the annotation entry it comes from (``ann.json: images[3]``, an XML file);
            one entry may serve several splits, but two entries may not share an image file.
    """

    path: str
    label: int
    box: Box | None
    size: tuple[int, int]
    source: str = ""


Splits = dict[str, list[BoxSample]]


def pick_box(
    objects: Sequence[tuple[int, Box]], multiple_objects: str
) -> tuple[int, Box | None] | None:
    """The ``(label, box)`` an image keeps from its objects, ``(0, None)`` when it has none.

    Args:
        objects: ``(label, xyxy box)`` pairs of the image.
        multiple_objects: ``"largest"`` keeps the box of largest area (the first on ties);
            ``"error"`` accepts one object only.

    Returns:
        The kept pair, or ``None`` when there are several objects and the policy is ``"error"``
        (the reader reports the image).
    """
    if not objects:
        return 0, None
    if len(objects) > 1 and multiple_objects == "error":
        return None
    return max(objects, key=lambda o: (o[1][2] - o[1][0]) * (o[1][3] - o[1][1]))


def box_params(out_of_frame: str, min_visibility: float) -> A.BboxParams:
    """Albumentations box handling for the ``out_of_frame`` policy (boxes in pixels, xyxy)."""
    check_choice("data.out_of_frame", out_of_frame, OUT_OF_FRAME)
    if not 0.0 <= min_visibility <= 1.0:
        raise ValueError(f"data.min_visibility must be in [0, 1], got {min_visibility}")
    return A.BboxParams(
        format="pascal_voc",
        label_fields=["labels"],
        clip=True,
        min_visibility=min_visibility if out_of_frame == "nothing" else 0.0,
        check_each_transform=False,  # filter once, after the pipeline: a third less time
    )


def empty_box_targets() -> dict[str, torch.Tensor]:
    """The targets of a batch of no image besides ``label``: box, original size, index."""
    return {
        "box": torch.empty(0, 4, dtype=torch.float32),
        "orig_size": torch.empty(0, 2, dtype=torch.int64),
        "index": torch.empty(0, dtype=torch.int64),
    }


class BoxDataset(AnnotatedImages):
    """Images with one box (or none), read, checked against their declared size and transformed.

    Args:
        samples: the split's samples.
        transform: an albumentations pipeline with ``bbox_params`` (label field ``labels``).
        on_bad_image: ``"error"`` raises :class:`BadImageError`; ``"skip"`` warns and returns
            ``None`` (dropped and counted by the collate function).
        cache_images: keep decoded images in memory after their first read.
    """

    def __getitem__(self, index: int) -> dict[str, torch.Tensor] | None:
        sample = self.samples[index]
        image = load_or_skip(self.load_image, index, self.on_bad_image)
        if image is None:
            return None
        has_box = sample.box is not None and sample.label > 0
        out = self.transform(
            image=image,
            bboxes=np.array([sample.box], dtype=np.float32) if has_box else np.zeros((0, 4)),
            labels=[sample.label] if has_box else [],
        )
        tensor = out["image"]
        height, width = tensor.shape[-2:]
        label, box = 0, torch.zeros(4, dtype=torch.float32)
        if len(out["bboxes"]):
            x0, y0, x1, y1 = (float(v) for v in out["bboxes"][0])
            label = int(out["labels"][0])
            box = torch.tensor(
                [
                    (x0 + x1) / 2 / width,
                    (y0 + y1) / 2 / height,
                    (x1 - x0) / width,
                    (y1 - y0) / height,
                ],
                dtype=torch.float32,
            )
        return {
            "image": tensor,
            "label": torch.tensor(label, dtype=torch.int64),
            "box": box,
            "orig_size": torch.tensor(image.shape[:2], dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
        }


class BoxDataModule(AnnotatedDataModule):
    """Base of the single-object box readers: box-aware pipelines, datasets, the empty batch.

    A subclass implements :meth:`read_splits`. ``class_names`` are the ``C`` object classes
    (label ``k`` is ``class_names[k - 1]``; label 0 is *nothing*).

    Args:
        multiple_objects: ``"largest"`` or ``"error"`` for an image with several objects.
        out_of_frame: ``"clip"`` or ``"nothing"``, see the module docstring.
        min_visibility: the least visible share of a box that stays an object under
            ``out_of_frame="nothing"``.
        **kwargs: :class:`~cvtasks.data.annotated.AnnotatedDataModule` options (val_fraction,
            test_fraction, split_seed, augment, ...); carving is stratified by label.
    """

    target_kind = "box"

    def __init__(
        self,
        *,
        multiple_objects: str = "largest",
        out_of_frame: str = "clip",
        min_visibility: float = 0.5,
        **kwargs: Any,
    ) -> None:
        check_choice("data.multiple_objects", multiple_objects, MULTIPLE_OBJECTS)
        super().__init__(bbox_params=box_params(out_of_frame, min_visibility), **kwargs)
        self.multiple_objects = multiple_objects

    @abstractmethod
    def read_splits(self) -> tuple[list[str], Splits]:
        """Read the annotations: ``(class_names, {"train": samples, ...})``."""

    def stratum(self, sample: BoxSample) -> str:
        """Carve by label, so every split keeps the share of each class and of *nothing*."""
        return str(sample.label)

    def make_dataset(
        self, samples: list[BoxSample], transform: Callable[..., dict[str, Any]]
    ) -> BoxDataset:
        """A :class:`BoxDataset` of ``samples``."""
        return BoxDataset(samples, transform, self.on_bad_image, self.cache_images)

    def empty_batch(self) -> dict[str, torch.Tensor]:
        """The base's empty batch plus zero-length ``box``, ``orig_size`` and ``index``."""
        return {**super().empty_batch(), **empty_box_targets()}
