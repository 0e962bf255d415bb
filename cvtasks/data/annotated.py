"""What the box readers share, single-object or detection: the checked image, the split bookkeeping.

A reader turns annotation files into samples (named tuples with at least ``path``, ``size`` and
``source``); :class:`AnnotatedDataModule` reads them once, refuses two entries naming one file,
carves missing val/test splits out of train and builds one dataset per split through
:meth:`AnnotatedDataModule.make_dataset`. :class:`AnnotatedImages` is the dataset base: it reads
an image and checks it against the size its annotation declares.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import albumentations as A
import numpy as np
from torch.utils.data import Dataset

from cvtasks.data.datamodule import ON_BAD_IMAGE, VisionDataModule, check_choice
from cvtasks.data.image_folder import stratified_split
from cvtasks.data.images import BadImageError, orientation_note, read_image
from cvtasks.data.scan import refuse_shared_files


class AnnotatedSample(Protocol):
    """What the shared code reads of a sample: its file, declared size and annotation entry."""

    path: str
    size: tuple[int, int]
    source: str


class AnnotatedImages(Dataset):
    """Base dataset of annotated images: read, checked against their declared size, cached.

    Subclasses implement ``__getitem__`` (calling :meth:`load_image` through
    :func:`~cvtasks.data.images.load_or_skip`).

    Args:
        samples: the split's samples.
        transform: an albumentations pipeline.
        on_bad_image: ``"error"`` raises :class:`BadImageError`; ``"skip"`` warns and the item
            is ``None`` (dropped and counted by the collate function).
        cache_images: keep decoded images in memory after their first read.
    """

    def __init__(
        self,
        samples: Sequence[Any],
        transform: Callable[..., dict[str, Any]],
        on_bad_image: str = "error",
        cache_images: bool = False,
    ) -> None:
        check_choice("data.on_bad_image", on_bad_image, ON_BAD_IMAGE)
        self.samples = list(samples)
        self.transform = transform
        self.on_bad_image = on_bad_image
        self.cache_images = cache_images
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, index: int) -> np.ndarray:
        """The decoded RGB image of sample ``index``, checked against its declared size.

        A declared size of ``(0, 0)`` means unknown and is not checked.

        Raises:
            BadImageError: the file cannot be decoded, or its size is not the declared one.
        """
        if index in self._cache:
            return self._cache[index].copy()
        sample = self.samples[index]
        image = read_image(sample.path)
        declared = tuple(sample.size)
        if declared != (0, 0) and image.shape[:2] != declared:
            height, width = declared
            raise BadImageError(
                sample.path,
                f"it is {image.shape[1]}x{image.shape[0]} but its annotation says {width}x{height}"
                + orientation_note(sample.path),
            )
        if self.cache_images:
            self._cache[index] = image
        return image


def _path(sample: AnnotatedSample) -> str:
    return sample.path


class AnnotatedDataModule(VisionDataModule):
    """Base of the box readers: splits read once, carved when missing, box-aware pipelines.

    A subclass implements :meth:`read_splits`, :meth:`stratum` and :meth:`make_dataset`.

    Args:
        bbox_params: albumentations box handling for every pipeline.
        val_fraction: share carved out of train for validation when a reader has no val split.
        test_fraction: the same for test.
        split_seed: seed of the carving (stratified by :meth:`stratum`).
        augment: albumentations specs, as for :class:`VisionDataModule`; geometric ones move
            the boxes.
        **kwargs: other :class:`VisionDataModule` options.
    """

    def __init__(
        self,
        *,
        bbox_params: A.BboxParams,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        augment: Sequence[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        self.bbox_params = bbox_params  # read by compose_kwargs, in the base's __init__
        super().__init__(augment=augment, **kwargs)
        for key, value in (
            ("data.val_fraction", val_fraction),
            ("data.test_fraction", test_fraction),
        ):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{key} must be in [0, 1), got {value!r}")
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self._splits: dict[str, list[Any]] | None = None

    def compose_kwargs(self) -> dict[str, Any]:
        """Both pipelines move the boxes with the image."""
        return {"bbox_params": self.bbox_params}

    @abstractmethod
    def read_splits(self) -> tuple[list[str], dict[str, list[Any]]]:
        """Read the annotations: ``(class_names, {"train": samples, ...})``."""

    @abstractmethod
    def stratum(self, sample: Any) -> str:
        """The group a sample is carved with, so that each carved split keeps the mix."""

    @abstractmethod
    def make_dataset(self, samples: list[Any], transform: Callable[..., dict[str, Any]]) -> Dataset:
        """The dataset of one split."""

    def prepare_root(self) -> None:
        """Make the files exist before they are read; a no-op here, built-in datasets write them."""

    @property
    def splits(self) -> dict[str, list[Any]]:
        """``{"train": [...], "val": [...], "test": [...]}``, read once."""
        if self._splits is None:
            self.prepare_root()
            names, splits = self.read_splits()
            # Two annotation entries naming one file (directly or through a link) would make it
            # two samples, or put it in two splits; one entry reused by two splits is the
            # config's choice (the same file given for val and test).
            owners = {(s.path, s.source or split) for split, items in splits.items() for s in items}
            refuse_shared_files(sorted(owners), "data", same_owner_ok=True)
            self._splits, self.class_names = splits, names
        return self._splits

    def discover_class_names(self) -> list[str]:
        """Read the annotations (once) and return the object class names."""
        _ = self.splits
        return self.class_names

    def carve(self, splits: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """Fill a missing val or test split from train, stratified by :meth:`stratum`, seeded."""
        fractions = {
            s: f
            for s, f in (("val", self.val_fraction), ("test", self.test_fraction))
            if s not in splits
        }
        if not fractions:
            return dict(splits)
        groups: dict[str, list[Any]] = {}
        for sample in splits["train"]:
            groups.setdefault(self.stratum(sample), []).append(sample)
        carved = stratified_split(groups, fractions, self.split_seed)
        out = {
            split: sorted((s for group in carved[split].values() for s in group), key=_path)
            for split in carved
        }
        return {**out, **{s: v for s, v in splits.items() if s != "train"}}

    def setup(self, stage: str | None = None) -> None:
        """Read the annotations (once) and build every split's dataset."""
        if self.train_dataset is not None:
            return
        splits = self.splits
        self.train_dataset = self.make_dataset(splits["train"], self.train_transform)
        self.val_dataset = self.make_dataset(splits["val"], self.eval_transform)
        self.test_dataset = self.make_dataset(splits["test"], self.eval_transform)
        self.predict_dataset = self.test_dataset
