"""Pairing ``images/`` with ``masks/`` by file name, and class names from ``classes.txt``.

An image ``images/a/b.jpg`` pairs with the mask ``masks/a/b.<any image suffix>``.
``root/classes.txt`` names the classes, one per line, line ``i`` naming index ``i``; without it
the classes are ``0 .. max`` over the training masks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from cvtasks.data.mask_dataset import Pair
from cvtasks.data.masks import BadMaskError, read_mask
from cvtasks.data.scan import FolderScan
from cvtasks.ops.masks import IGNORE_INDEX

__all__ = ["first_few", "pair_folder", "read_class_names"]

log = logging.getLogger(__name__)

_SHOWN = 5  # how many offending files a message lists


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
