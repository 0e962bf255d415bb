"""The DataModule base of segmentation readers: class count, pipelines, datasets, empty batch.

A reader subclasses :class:`SegmentationDataModule` and lists its pairs in ``scan``; the base
checks the class count, builds the mask-preserving pipelines and the four datasets.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from typing import Any

import cv2
import torch

from cvtasks.data.datamodule import VisionDataModule, check_choice
from cvtasks.data.mask_dataset import ImageMaskDataset, Pair
from cvtasks.data.masks import LOSSY_MASKS
from cvtasks.ops.masks import IGNORE_INDEX

__all__ = [
    "MAX_CLASSES",
    "SegmentationDataModule",
    "empty_mask_targets",
    "mask_compose_kwargs",
]

MAX_CLASSES = IGNORE_INDEX  # indices 0..254; 255 is the ignore index


def mask_compose_kwargs() -> dict[str, Any]:
    """``A.Compose`` keywords of mask pipelines: nearest-neighbour masks (class indices)."""
    return {"mask_interpolation": cv2.INTER_NEAREST}


def empty_mask_targets(height: int, width: int) -> dict[str, Any]:
    """The targets of a batch of no image: masks, original sizes, no original masks."""
    return {
        "mask": torch.empty(0, height, width, dtype=torch.int64),
        "orig_size": torch.empty(0, 2, dtype=torch.int64),
        "orig_mask": [],
    }


class SegmentationDataModule(VisionDataModule, metaclass=ABCMeta):
    """Base of segmentation DataModules: subclasses list the pairs in :meth:`scan`.

    Pipelines resize masks with nearest-neighbour interpolation whatever the augmentations say
    (``A.Compose(mask_interpolation=cv2.INTER_NEAREST)``), so a mask only ever holds its own
    values.

    Args:
        lossy_masks: ``"error"`` refuses masks stored in a lossy format (JPEG, lossy WebP,
            JPEG 2000) naming them; ``"allow"`` reads them with one warning.
        **kwargs: :class:`VisionDataModule` options (batch_size, image_size, augment, ...).
    """

    target_kind = "mask"
    #: the test split's masks as read (sizes differ), to score at each image's original size
    list_keys = ("orig_mask",)

    def __init__(self, lossy_masks: str = "error", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_choice("data.lossy_masks", lossy_masks, LOSSY_MASKS)
        self.lossy_masks = lossy_masks
        self._splits: dict[str, list[Pair]] | None = None

    def compose_kwargs(self) -> dict[str, Any]:
        """Both pipelines resize and warp masks by nearest neighbour (class indices)."""
        return mask_compose_kwargs()

    @abstractmethod
    def scan(self) -> tuple[list[str], dict[str, list[Pair]]]:
        """``(class_names, {"train": pairs, "val": pairs, "test": pairs})``; subclasses list."""

    @property
    def splits(self) -> dict[str, list[Pair]]:
        """The pairs of every split, scanned once."""
        if self._splits is None:
            class_names, self._splits = self.scan()
            if not 1 <= len(class_names) <= MAX_CLASSES:
                raise ValueError(
                    f"{len(class_names)} classes: segmentation supports 1 to {MAX_CLASSES} "
                    f"(mask value {IGNORE_INDEX} means ignore)"
                )
            self.class_names = class_names
        return self._splits

    def discover_class_names(self) -> list[str]:
        """Scan (once) and return the class names."""
        _ = self.splits
        return self.class_names

    def setup(self, stage: str | None = None) -> None:
        """Scan (once) and build the datasets; every stage gets all four."""
        if self.train_dataset is not None:
            return
        splits = self.splits

        def dataset(split: str, transform: Callable[..., dict[str, Any]]) -> ImageMaskDataset:
            return ImageMaskDataset(
                splits[split],
                transform,
                self.num_classes,
                self.on_bad_image,
                self.cache_images,
                self.lossy_masks,
                original_mask=split == "test",  # test metrics: at each image's own size
            )

        self.train_dataset = dataset("train", self.train_transform)
        self.val_dataset = dataset("val", self.eval_transform)
        self.test_dataset = dataset("test", self.eval_transform)
        self.predict_dataset = self.test_dataset

    def empty_batch(self) -> dict[str, Any]:
        """Zero-length image, mask and original-size tensors, no original masks (all samples
        skipped)."""
        height, width = self.image_size
        return {
            "image": torch.empty(0, len(self.mean), height, width, dtype=torch.float32),
            **empty_mask_targets(height, width),
        }
