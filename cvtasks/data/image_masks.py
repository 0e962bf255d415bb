"""Image + mask folders for semantic segmentation: ``images/`` and ``masks/`` matched by name.

Layouts:

- ``root/train/{images,masks}`` with optional ``root/val`` (or ``valid``, ``validation``) and
  ``root/test`` holding the same two folders; a missing val or test split is carved out of train;
- ``root/{images,masks}``: train, val and test are all carved out (seeded).

An image ``images/a/b.jpg`` pairs with the mask ``masks/a/b.<any image suffix>``. A mask is a
single-channel or palette PNG whose pixel values are class indices; 255 marks pixels to ignore
(Pascal VOC's object borders); masks in a lossy format are refused unless
``lossy_masks="allow"`` (see :mod:`cvtasks.data.masks`). ``root/classes.txt`` names the
classes, one per line, line ``i`` naming index ``i``; without it the classes are ``0 .. max``
over the training masks (see :mod:`cvtasks.data.mask_folders`). Folders are listed by
:class:`~cvtasks.data.scan.FolderScan` (links leaving the root only with ``follow_links``; an
image reachable from two splits is an error).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cvtasks.data.datamodule import check_choice
from cvtasks.data.image_folder import TEST_DIRS, VAL_DIRS, stratified_split
from cvtasks.data.mask_dataset import Pair
from cvtasks.data.mask_folders import pair_folder, read_class_names
from cvtasks.data.masks import check_lossy_masks
from cvtasks.data.scan import FolderScan
from cvtasks.data.segmentation_datamodule import SegmentationDataModule
from cvtasks.registry import DATASETS

__all__ = ["ImageMaskDataModule"]

USAGE = "set data.root=PATH, the folder that holds images/ and masks/ (or train/, val/, test/)"


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
