"""Detection samples (many boxes per image), their dataset and the readers' DataModule base.

A reader (COCO JSON, VOC XML, YOLO text) turns its files into :class:`DetectionSample` records
(image path, every box with its class and crowd flag, declared size); :class:`DetectionDataModule`
splits, augments and batches them into the detection batch of docs/architecture.md:

    image float[B,3,H,W], boxes list[float[N_i,4]] (x1, y1, x2, y2 in pixels of the network
    input), labels list[int64[N_i]] (0..C-1), crowd list[bool[N_i]], orig_size int64[B,2]
    (height, width of the file), index int64[B] (sample index in its split)

Augmentations and the resize move the boxes with the image (albumentations ``BboxParams``,
pascal_voc pixels); a box pushed partly out of the frame is clipped to it, and dropped when less
than ``min_visibility`` of its area stays in view. Images without objects are kept as negatives.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

import albumentations as A
import numpy as np
import torch

from cvtasks.data.annotated import AnnotatedDataModule, AnnotatedImages
from cvtasks.data.annotations import ON_BAD_ANNOTATION
from cvtasks.data.boxes import Box
from cvtasks.data.datamodule import check_choice
from cvtasks.data.images import load_or_skip

__all__ = [
    "Box",
    "DetectionDataModule",
    "DetectionDataset",
    "DetectionSample",
    "Splits",
    "detection_box_params",
    "empty_detection_targets",
]

DETECTION_KEYS = ("boxes", "labels", "crowd")


class DetectionSample(NamedTuple):
    """One image and every object in it.

    Attributes:
        path: the image file.
        boxes: ``(x_min, y_min, x_max, y_max)`` per object, in pixels of the file.
        labels: contiguous class index ``0..C-1`` per object.
        crowd: per object, COCO ``iscrowd`` / VOC ``difficult``: kept, ignored by loss and metric.
        size: ``(height, width)`` the annotations declare for the file, ``(0, 0)`` when unknown.
        source: the annotation entry it comes from (``ann.json: images[3]``, an XML file).
    """

    path: str
    boxes: tuple[Box, ...]
    labels: tuple[int, ...]
    crowd: tuple[bool, ...]
    size: tuple[int, int]
    source: str = ""


Splits = dict[str, list[DetectionSample]]


def detection_box_params(min_visibility: float) -> A.BboxParams:
    """Albumentations box handling: pixels, xyxy, clipped, dropped under ``min_visibility``."""
    if not 0.0 <= min_visibility <= 1.0:
        raise ValueError(f"data.min_visibility must be in [0, 1], got {min_visibility}")
    return A.BboxParams(
        format="pascal_voc",
        label_fields=["labels", "crowd"],
        clip=True,
        min_visibility=min_visibility,
        check_each_transform=False,  # filter once, after the pipeline
    )


def empty_detection_targets() -> dict[str, Any]:
    """The targets of a batch of no image: empty lists, original sizes and indices."""
    return {
        **{key: [] for key in DETECTION_KEYS},
        "orig_size": torch.empty(0, 2, dtype=torch.int64),
        "index": torch.empty(0, dtype=torch.int64),
    }


class DetectionDataset(AnnotatedImages):
    """Images with any number of boxes, read, checked against their declared size, transformed.

    Args:
        samples: the split's samples.
        transform: an albumentations pipeline with :func:`detection_box_params`.
        on_bad_image: ``"error"`` raises; ``"skip"`` warns and returns ``None`` (dropped and
            counted by the collate function).
        cache_images: keep decoded images in memory after their first read.
    """

    def __getitem__(self, index: int) -> dict[str, torch.Tensor] | None:
        sample: DetectionSample = self.samples[index]
        image = load_or_skip(self.load_image, index, self.on_bad_image)
        if image is None:
            return None
        out = self.transform(
            image=image,
            bboxes=np.asarray(sample.boxes, dtype=np.float32).reshape(-1, 4),
            labels=list(sample.labels),
            crowd=list(sample.crowd),
        )
        return {
            "image": out["image"],
            "boxes": torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)),
            "labels": torch.as_tensor(list(out["labels"]), dtype=torch.int64).reshape(-1),
            "crowd": torch.as_tensor(list(out["crowd"]), dtype=torch.bool).reshape(-1),
            "orig_size": torch.tensor(image.shape[:2], dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
        }


class DetectionDataModule(AnnotatedDataModule):
    """Base of the detection readers: box-aware pipelines, datasets, list-collated targets.

    A subclass implements :meth:`read_splits` (class names and :class:`DetectionSample` lists;
    a split the files lack is filled by :meth:`carve`). It checks each box against its image
    and reports problems through an :class:`~cvtasks.data.annotations.AnnotationIssues` of
    ``on_bad_annotation`` (``unit="boxes"``), recording the counts in ``skipped_annotations``.

    Args:
        min_visibility: the least share of a box's area that must stay in view after
            augmentation for the box to be kept.
        on_bad_annotation: ``"error"`` raises at a box outside its image, without area or of
            an unknown category, naming the file and the field; ``"skip"`` drops the box, counts
            it and warns once per file.
        **kwargs: :class:`~cvtasks.data.annotated.AnnotatedDataModule` options (val_fraction,
            test_fraction, split_seed, augment, image_size, ...).
    """

    target_kind = "objects"
    list_keys = DETECTION_KEYS

    def __init__(
        self, *, min_visibility: float = 0.3, on_bad_annotation: str = "error", **kwargs: Any
    ) -> None:
        check_choice("data.on_bad_annotation", on_bad_annotation, ON_BAD_ANNOTATION)
        super().__init__(bbox_params=detection_box_params(min_visibility), **kwargs)
        self.min_visibility = min_visibility
        self.on_bad_annotation = on_bad_annotation
        #: per split, how many bad annotations ``on_bad_annotation=skip`` dropped.
        self.skipped_annotations: dict[str, int] = {}

    @abstractmethod
    def read_splits(self) -> tuple[list[str], Splits]:
        """Read the annotations: ``(class_names, {"train": samples, ...})``."""

    def stratum(self, sample: DetectionSample) -> str:
        """Carve by the image's most frequent class (smallest on ties), negatives apart."""
        if not sample.labels:
            return "none"
        counts = Counter(sample.labels)
        return str(min(counts, key=lambda label: (-counts[label], label)))

    def make_dataset(
        self, samples: list[DetectionSample], transform: Callable[..., dict[str, Any]]
    ) -> DetectionDataset:
        """A :class:`DetectionDataset` of ``samples``."""
        return DetectionDataset(samples, transform, self.on_bad_image, self.cache_images)

    def empty_batch(self) -> dict[str, Any]:
        """The batch of a batch whose images were all skipped: zero images, empty lists."""
        return {"image": super().empty_batch()["image"], **empty_detection_targets()}
