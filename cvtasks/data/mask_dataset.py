"""The dataset of image and mask pairs every segmentation reader shares.

A reader lists ``(image path, mask path)`` pairs; :class:`ImageMaskDataset` reads each pair,
checks the mask against its image and classes (:mod:`cvtasks.data.masks`), and transforms both
together.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from cvtasks.data.datamodule import ON_BAD_IMAGE, check_choice
from cvtasks.data.images import BadImageError, load_or_skip, read_image
from cvtasks.data.masks import LOSSY_MASKS, BadMaskError, check_mask, read_mask

__all__ = ["ImageMaskDataset", "Pair"]

Pair = tuple[str, str | None]  # (image path, mask path or None when the image has no mask)


class ImageMaskDataset(Dataset):
    """Image and mask pairs, checked, transformed together.

    A sample is ``{"image": float[3,H,W], "mask": int64[H,W], "orig_size": int64[2], "path"}``;
    ``orig_size`` is the file's ``(height, width)`` so predictions can go back to it. With
    ``original_mask`` it also holds ``orig_mask``, the mask as read (``uint8``, the file's
    size, untransformed), which the test split is scored against.

    Args:
        pairs: ``(image path, mask path or None)``.
        transform: an albumentations pipeline called as ``transform(image=..., mask=...)``.
        num_classes: the number of classes; mask values must be below it or 255.
        on_bad_image: ``"error"`` raises :class:`BadImageError` / :class:`BadMaskError` naming
            the file; ``"skip"`` warns and returns ``None`` (dropped and counted by the collate).
        cache_images: keep decoded, checked images and masks in memory after their first read.
        lossy_masks: ``"error"`` refuses a mask stored in a lossy format (JPEG...);
            ``"allow"`` reads it.
        original_mask: add ``orig_mask`` to each sample.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        transform: Callable[..., dict[str, Any]],
        num_classes: int,
        on_bad_image: str = "error",
        cache_images: bool = False,
        lossy_masks: str = "error",
        original_mask: bool = False,
    ) -> None:
        check_choice("data.on_bad_image", on_bad_image, ON_BAD_IMAGE)
        check_choice("data.lossy_masks", lossy_masks, LOSSY_MASKS)
        self.pairs = [(os.fspath(i), None if m is None else os.fspath(m)) for i, m in pairs]
        self.transform = transform
        self.num_classes = int(num_classes)
        self.on_bad_image = on_bad_image
        self.cache_images = cache_images
        self.lossy_masks = lossy_masks
        self.original_mask = bool(original_mask)
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
        # copied first: a transform may write into the array it gets
        original = mask.astype(np.uint8, copy=True) if self.original_mask else None
        out = self.transform(image=image, mask=mask)
        sample = {
            "image": out["image"],
            "mask": torch.as_tensor(out["mask"]).long(),
            "orig_size": torch.tensor(image.shape[:2], dtype=torch.int64),
            "path": self.pairs[index][0],
        }
        if original is not None:
            sample["orig_mask"] = torch.from_numpy(original)
        return sample
