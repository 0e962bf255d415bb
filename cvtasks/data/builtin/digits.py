"""The default dataset: scikit-learn's 8x8 handwritten digits, written out as class folders.

``load_digits()`` ships inside scikit-learn (1797 images, 10 classes, values 0-16), so a fresh
machine trains without a download. The images are written once as 8-bit grayscale PNGs in the
ImageFolder layout ``<root>/digits-v1/{train,val,test}/<digit>/<index>.png`` and read back by
:class:`~cvtasks.data.image_folder.ImageFolderDataModule`, like any folder a user brings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cvtasks.data.builtin.base import WrittenOnFirstUse, builtin_root
from cvtasks.data.cache import write_once
from cvtasks.data.image_folder import ImageFolderDataModule, stratified_split
from cvtasks.registry import DATASETS

DIGITS_DIR = "digits-v1"
"""Folder name; bump the version whenever the written files would change."""
DIGITS_SPLIT = {"val": 0.15, "test": 0.15}  # the rest, 70 %, is train
DIGITS_SEED = 0


def write_digits(root: str | os.PathLike[str]) -> Path:
    """Write the digits dataset under ``root`` unless it is already there.

    The files go to a temporary folder beside the final one and are renamed into place in one
    step, so a reader never sees half a dataset; when two processes race, the first rename wins
    and the other keeps it. The split is stratified and seeded: the same files on every machine
    (1257 train, 270 val, 270 test).

    Args:
        root: the folder to hold ``digits-v1``.

    Returns:
        ``root/digits-v1``.
    """
    final = Path(root).expanduser() / DIGITS_DIR
    if final.is_dir():
        return final
    from sklearn.datasets import load_digits  # slow to import; only needed on the first run

    digits = load_digits()
    # 0-16 -> 0-255 so the PNGs look like ordinary images; round(v * 16 / 255) recovers v.
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    by_class = {str(c): [int(i) for i in np.flatnonzero(digits.target == c)] for c in range(10)}
    splits = stratified_split(by_class, DIGITS_SPLIT, DIGITS_SEED)

    def fill(folder: Path) -> None:
        for split, classes in splits.items():
            for name, indices in classes.items():
                (folder / split / name).mkdir(parents=True)
                for i in indices:
                    path = folder / split / name / f"{i:04d}.png"
                    Image.fromarray(pixels[i]).save(path, format="PNG")

    return write_once(final, fill)


class DigitsDataModule(WrittenOnFirstUse, ImageFolderDataModule):
    """:class:`ImageFolderDataModule` over the written digits, writing them first if needed.

    Args:
        data_root: the folder that holds (or will hold) ``digits-v1``.
        **kwargs: :class:`ImageFolderDataModule` / :class:`VisionDataModule` options.
    """

    def __init__(self, data_root: str | os.PathLike[str], **kwargs: Any) -> None:
        self.data_root = Path(data_root).expanduser()
        super().__init__(self.data_root / DIGITS_DIR, **kwargs)

    def write_dataset(self) -> Path:
        """Write ``digits-v1`` under ``data_root`` unless it is there (:func:`write_digits`)."""
        return write_digits(self.data_root)


@DATASETS.register("digits")
def digits(
    root: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 64,
    image_size: int = 32,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.5, 0.5, 0.5),
    cache_images: bool = True,
    **kwargs: Any,
) -> DigitsDataModule:
    """The built-in digits dataset (10 classes, 8x8 grayscale shown as RGB, resized).

    Args:
        root: where to keep ``digits-v1``; ``None`` means ``default_cache_dir() / "data"``.
        batch_size: samples per batch.
        image_size: output size (the source images are 8x8).
        mean: normalization mean.
        std: normalization standard deviation.
        cache_images: keep decoded images in memory; on by default here because the whole
            dataset is about 350 kB decoded and decoding is most of the per-sample work.
        **kwargs: other :class:`VisionDataModule` options (augment, cache_images, ...).

    Returns:
        The DataModule; the files are written by ``prepare_data`` or on first use.
    """
    return DigitsDataModule(
        builtin_root(root),
        batch_size=batch_size,
        image_size=image_size,
        mean=mean,
        std=std,
        cache_images=cache_images,
        **kwargs,
    )
