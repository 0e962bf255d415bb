"""An open-set verification case: handwritten digits 0-6 to train, 7-9 to verify.

scikit-learn's 8x8 digits (the ``digits`` dataset) read as identities: each digit is a "person".
The embedding network trains on digits 0-6 only; validation and test pairs are drawn among
digits 7-9, which it never sees, each of their images going to val or test (half each, seeded).
Written once as identity folders with LFW-style pairs files and read back by
:class:`~cvtasks.data.identity_folders.IdentityFoldersDataModule`, like any such folder.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cvtasks.data.builtin.base import builtin_root
from cvtasks.data.builtin.identities import BuiltinIdentitiesDataModule, write_identity_dataset
from cvtasks.data.image_folder import stratified_split
from cvtasks.registry import DATASETS

DIR = "digits-identities-v1"
"""Folder name; bump the version whenever the written files would change."""
TRAIN_DIGITS = tuple(range(7))
VERIFY_DIGITS = (7, 8, 9)
PAIRS = {"val": 600, "test": 1000}
SEED = 0


def write_digits_identities(root: str | os.PathLike[str]) -> Path:
    """Write the digits as identity folders under ``root`` unless they are there already.

    ``train/digit_<d>/`` for d in 0-6 (every image), ``val/`` and ``test/`` for 7-9 (half of
    each digit's images each), ``val_pairs.txt`` (600 pairs) and ``test_pairs.txt`` (1000), all
    written in one step by :func:`~cvtasks.data.builtin.identities.write_identity_dataset`.

    Returns:
        ``root/digits-identities-v1``.
    """
    final = Path(root).expanduser() / DIR
    if final.is_dir():
        return final
    from sklearn.datasets import load_digits  # slow to import; only needed on the first run

    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # as the digits dataset
    by_digit = {d: [int(i) for i in np.flatnonzero(digits.target == d)] for d in range(10)}
    held = stratified_split({f"digit_{d}": by_digit[d] for d in VERIFY_DIGITS}, {"val": 0.5}, SEED)
    splits = {
        "train": {f"digit_{d}": by_digit[d] for d in TRAIN_DIGITS},
        "val": held["val"],
        "test": held["train"],
    }
    images = {
        split: {
            name: [Image.fromarray(pixels[i]) for i in indices] for name, indices in people.items()
        }
        for split, people in splits.items()
    }
    return write_identity_dataset(final, images, PAIRS, seed=SEED)


@DATASETS.register("digits_identities")
def digits_identities(
    root: str | os.PathLike[str] | None = None,
    *,
    identities_per_batch: int = 7,
    images_per_identity: int = 16,
    image_size: int = 32,
    batch_size: int = 128,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.5, 0.5, 0.5),
    cache_images: bool = True,
    **kwargs: Any,
) -> BuiltinIdentitiesDataModule:
    """Digits 0-6 for training, pairs of digits 7-9 for validation and test.

    Args:
        root: where to keep ``digits-identities-v1``; ``None``: ``default_cache_dir() / "data"``.
        identities_per_batch: P (at most 7: the training digits).
        images_per_identity: K.
        image_size: output size (the source images are 8x8).
        batch_size: pairs per evaluation batch.
        mean: normalization mean.
        std: normalization standard deviation.
        cache_images: keep decoded images in memory (the whole set is tiny).
        **kwargs: other :class:`IdentityFoldersDataModule` options (augment, ...).
    """
    data_root = builtin_root(root)
    return BuiltinIdentitiesDataModule(
        data_root / DIR,
        partial(write_digits_identities, data_root),
        identities_per_batch=identities_per_batch,
        images_per_identity=images_per_identity,
        image_size=image_size,
        batch_size=batch_size,
        mean=mean,
        std=std,
        cache_images=cache_images,
        **kwargs,
    )
