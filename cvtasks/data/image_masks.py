"""Image + mask folders for semantic segmentation: ``images/`` and ``masks/`` matched by name.

Layouts:

- ``root/train/{images,masks}`` with optional ``root/val`` (or ``valid``, ``validation``) and
  ``root/test`` holding the same two folders; a missing val or test split is carved out of train;
- ``root/{images,masks}``: train, val and test are all carved out (seeded).

An image ``images/a/b.jpg`` pairs with the mask ``masks/a/b.<any image suffix>``. A mask is a
single-channel or palette PNG whose pixel values are class indices; 255 marks pixels to ignore
(Pascal VOC's object borders); masks in a lossy format are refused unless
``lossy_masks="allow"`` (see :mod:`cvtasks.data.mask_files`). ``root/classes.txt`` names the
classes, one per line, line ``i`` naming index ``i``; without it the classes are ``0 .. max``
over the training masks. Folders are listed by :class:`~cvtasks.data.scan.FolderScan` (links
leaving the root only with ``follow_links``; an image reachable from two splits is an error).
"""

from __future__ import annotations

import logging
import os
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from cvtasks.data.datamodule import ON_BAD_IMAGE, VisionDataModule, check_choice
from cvtasks.data.image_folder import TEST_DIRS, VAL_DIRS, stratified_split
from cvtasks.data.images import BadImageError, load_or_skip, read_image
from cvtasks.data.mask_files import (
    IGNORE_INDEX,
    LOSSY_MASKS,
    BadMaskError,
    check_lossy_masks,
    check_mask,
    mask_palette,
    read_mask,
    write_mask,
)
from cvtasks.data.scan import FolderScan
from cvtasks.data.transforms import build_pipeline
from cvtasks.registry import DATASETS

__all__ = [
    "IGNORE_INDEX",
    "BadMaskError",
    "ImageMaskDataModule",
    "ImageMaskDataset",
    "SegmentationDataModule",
    "check_mask",
    "mask_palette",
    "pair_folder",
    "read_class_names",
    "read_mask",
    "write_mask",
]

log = logging.getLogger(__name__)

MAX_CLASSES = 255  # indices 0..254; 255 is the ignore index
USAGE = "set data.root=PATH, the folder that holds images/ and masks/ (or train/, val/, test/)"
Pair = tuple[str, str | None]  # (image path, mask path or None when the image has no mask)
_SHOWN = 5  # how many offending files a message lists


class ImageMaskDataset(Dataset):
    """Image and mask pairs, checked, transformed together.

    A sample is ``{"image": float[3,H,W], "mask": int64[H,W], "orig_size": int64[2], "path"}``;
    ``orig_size`` is the file's ``(height, width)`` so predictions can go back to it.

    Args:
        pairs: ``(image path, mask path or None)``.
        transform: an albumentations pipeline called as ``transform(image=..., mask=...)``.
        num_classes: the number of classes; mask values must be below it or 255.
        on_bad_image: ``"error"`` raises :class:`BadImageError` / :class:`BadMaskError` naming
            the file; ``"skip"`` warns and returns ``None`` (dropped and counted by the collate).
        cache_images: keep decoded, checked images and masks in memory after their first read.
        lossy_masks: ``"error"`` refuses a mask stored in a lossy format (JPEG...);
            ``"allow"`` reads it.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        transform: Callable[..., dict[str, Any]],
        num_classes: int,
        on_bad_image: str = "error",
        cache_images: bool = False,
        lossy_masks: str = "error",
    ) -> None:
        check_choice("data.on_bad_image", on_bad_image, ON_BAD_IMAGE)
        check_choice("data.lossy_masks", lossy_masks, LOSSY_MASKS)
        self.pairs = [(os.fspath(i), None if m is None else os.fspath(m)) for i, m in pairs]
        self.transform = transform
        self.num_classes = int(num_classes)
        self.on_bad_image = on_bad_image
        self.cache_images = cache_images
        self.lossy_masks = lossy_masks
        self._cache: dict[int, tuple[np.ndarray, np.ndarray] | BadImageError] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.pairs[index]
        if mask_path is None:
            raise BadMaskError(image_path, "this image has no mask (no file of the same name)")
        image = read_image(image_path)
        mask = read_mask(mask_path, allow_lossy=self.lossy_masks == "allow")
        check_mask(mask, image.shape, self.num_classes, mask_path, image_path)
        return image, mask.astype(np.uint8)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The decoded ``uint8`` image ``[H, W, 3]`` and mask ``[H, W]`` of sample ``index``.

        Raises:
            BadImageError: the image cannot be decoded.
            BadMaskError: the mask is missing, undecodable, of another size or has bad values.
        """
        loaded = self._cache.get(index)
        if loaded is None:
            try:
                loaded = self._read(index)
            except BadImageError as err:
                loaded = err  # cached too: reading again fails again
            if self.cache_images:
                self._cache[index] = loaded
        if isinstance(loaded, BadImageError):
            raise loaded
        if self.cache_images:  # transforms must not alter the cache
            return loaded[0].copy(), loaded[1].copy()
        return loaded

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        loaded = load_or_skip(self.load, index, self.on_bad_image)
        if loaded is None:
            return None
        image, mask = loaded
        out = self.transform(image=image, mask=mask)
        return {
            "image": out["image"],
            "mask": torch.as_tensor(out["mask"]).long(),
            "orig_size": torch.tensor(image.shape[:2], dtype=torch.int64),
            "path": self.pairs[index][0],
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

    def __init__(self, lossy_masks: str = "error", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_choice("data.lossy_masks", lossy_masks, LOSSY_MASKS)
        self.lossy_masks = lossy_masks
        augment = kwargs.get("augment")
        size, mean, std = self.image_size, self.mean, self.std
        nearest = {"mask_interpolation": cv2.INTER_NEAREST}
        self.train_transform = build_pipeline(
            augment, size, mean, std, train=True, seed=torch.initial_seed() % 2**32, **nearest
        )
        self.eval_transform = build_pipeline(augment, size, mean, std, train=False, **nearest)
        self._splits: dict[str, list[Pair]] | None = None

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
            )

        self.train_dataset = dataset("train", self.train_transform)
        self.val_dataset = dataset("val", self.eval_transform)
        self.test_dataset = dataset("test", self.eval_transform)
        self.predict_dataset = self.test_dataset

    def empty_batch(self) -> dict[str, torch.Tensor]:
        """Zero-length image, mask and original-size tensors (all samples skipped)."""
        height, width = self.image_size
        return {
            "image": torch.empty(0, 3, height, width, dtype=torch.float32),
            "mask": torch.empty(0, height, width, dtype=torch.int64),
            "orig_size": torch.empty(0, 2, dtype=torch.int64),
        }


@DATASETS.register("image_masks")
class ImageMaskDataModule(SegmentationDataModule):
    """Image and mask folders (see the module docstring for the layouts).

    Args:
        root: the dataset folder (required; ``None`` raises an error that says how to set it).
        val_fraction: share carved out of train for validation when there is no val folder.
        test_fraction: share carved out of train for testing when there is no test folder.
        split_seed: seed of the carving.
        follow_links: also follow symbolic links that leave ``root``.
        **kwargs: :class:`SegmentationDataModule` options (lossy_masks, batch_size, ...).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        follow_links: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_choice("data.follow_links", follow_links, (False, True))
        self.follow_links = bool(follow_links)
        for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"data.{key} must be in [0, 1), got {value!r}")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError("data.val_fraction + data.test_fraction must be below 1")
        if root is None:
            raise ValueError(f"data.root is not set: {USAGE}")
        self.root = Path(root).expanduser()
        self.fractions = {"val": val_fraction, "test": test_fraction}
        self.split_seed = split_seed

    def prepare_root(self) -> None:
        """Make ``root`` exist before it is scanned; built-in datasets write it here."""

    def scan(self) -> tuple[list[str], dict[str, list[Pair]]]:
        """Pair the files of every split and read the class names."""
        self.prepare_root()
        root = self.root
        if not root.is_dir():
            what = "is not a folder" if root.exists() else "does not exist"
            raise FileNotFoundError(f"data.root: the dataset folder {root} {what}.")
        skip = self.on_bad_image == "skip"
        scan = FolderScan(root, self.follow_links, self.on_bad_image)
        with scan.reporting():
            if (root / "train").is_dir():
                by_split = {"train": pair_folder(root / "train", skip, scan)}
                for split, names in (("val", VAL_DIRS), ("test", TEST_DIRS)):
                    found = [root / n for n in names if (root / n).is_dir()]
                    if len(found) > 1:
                        raise ValueError(f"data.root: {root} has {', '.join(names)}; keep one")
                    if found:
                        by_split[split] = pair_folder(found[0], skip, scan)
                carve = {s: f for s, f in self.fractions.items() if s not in by_split}
                carved = stratified_split({"all": by_split["train"]}, carve, self.split_seed)
                by_split.update({split: groups["all"] for split, groups in carved.items()})
            else:
                carved = stratified_split(
                    {"all": pair_folder(root, skip, scan)}, self.fractions, self.split_seed
                )
                by_split = {split: groups["all"] for split, groups in carved.items()}
        masks = {m for pairs in by_split.values() for _, m in pairs if m is not None}
        check_lossy_masks(sorted(masks), self.lossy_masks)  # before any mask is read
        allow = self.lossy_masks == "allow"
        return read_class_names(root, by_split["train"], skip, allow), by_split


def pair_folder(
    folder: Path, skip_missing: bool = False, scan: FolderScan | None = None
) -> list[Pair]:
    """Pair ``folder/images/<name>.*`` with ``folder/masks/<name>.*``, sorted by image path.

    Args:
        folder: holds ``images`` and ``masks``.
        skip_missing: keep images without a mask (paired with ``None``: the dataset skips and
            counts them) instead of raising.
        scan: the scan of the dataset root, shared by the splits so that an image reachable
            from two of them is caught; by default a scan of ``folder`` alone.

    Raises:
        FileNotFoundError: a folder is missing or empty, or (unless ``skip_missing``) images
            have no mask; the message names them.
        ValueError: two images or two masks share a name.
    """
    if scan is None:
        scan = FolderScan(folder)
        with scan.reporting():
            return pair_folder(folder, skip_missing, scan)
    split = os.path.relpath(folder, scan.root)
    images, masks = _by_name(scan, folder / "images", split), _by_name(scan, folder / "masks")
    if not images:
        raise FileNotFoundError(f"data.root: no images in {folder / 'images'}")
    missing = [path for name, path in images.items() if name not in masks]
    if missing and not skip_missing:
        raise FileNotFoundError(
            f"data.root: {len(missing)} image(s) have no mask of the same name in "
            f"{folder / 'masks'}: {first_few(missing)}. Add the masks, or set "
            "data.on_bad_image=skip to skip (and count) them."
        )
    orphans = sorted(set(masks) - set(images))
    if orphans:
        log.warning("%d mask(s) in %s have no image: %s", len(orphans), folder, first_few(orphans))
    return sorted((path, masks.get(name)) for name, path in images.items())


def _by_name(scan: FolderScan, folder: Path, group: str | None = None) -> dict[str, str]:
    """``{relative path without suffix: path}`` of the images under ``folder``.

    Images are listed once per real file (``group`` is their split); masks (``group=None``)
    under every name, since each name pairs with an image.
    """
    if not folder.is_dir():
        raise FileNotFoundError(
            f"data.root: {folder} is missing; expected {folder.parent}/images and "
            f"{folder.parent}/masks (matched by file name)."
        )
    found: dict[str, str] = {}
    for path in scan.files(folder, group):
        name = os.path.splitext(os.path.relpath(path, folder))[0]
        if name in found:
            raise ValueError(f"data.root: {found[name]} and {path} have the same name")
        found[name] = path
    return found


def read_class_names(
    root: Path, train_pairs: Sequence[Pair], skip_bad: bool = False, allow_lossy: bool = False
) -> list[str]:
    """Class names from ``root/classes.txt``, else ``"0" .. str(max)`` over the train masks.

    Args:
        root: the dataset folder.
        train_pairs: the training pairs, whose masks are read when there is no ``classes.txt``.
        skip_bad: pass over undecodable masks (the dataset skips them later) instead of raising.
        allow_lossy: read masks stored in a lossy format (``data.lossy_masks=allow``).
    """
    listing = root / "classes.txt"
    if listing.is_file():
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        if not names:
            raise ValueError(f"data.root: {listing} names no classes")
        return names
    top = 0
    for _, mask_path in train_pairs:
        if mask_path is None:
            continue
        try:
            values = read_mask(mask_path, allow_lossy)
        except BadMaskError:
            if skip_bad:
                continue
            raise
        valid = values[values != IGNORE_INDEX]
        top = max(top, int(valid.max()) if valid.size else 0)
    log.info("no %s: %d classes from the largest mask value", listing, top + 1)
    return [str(i) for i in range(top + 1)]


def first_few(items: Sequence[str]) -> str:
    """The first few ``items`` joined by commas, with "..." when there are more."""
    return ", ".join(items[:_SHOWN]) + (", ..." if len(items) > _SHOWN else "")
