"""Pascal VOC semantic segmentation: ``data=voc_segmentation data.root=PATH``.

The layout of the VOC2007/VOC2012 archives::

    <root>/JPEGImages/<id>.jpg
    <root>/SegmentationClass/<id>.png          palette PNG: 0 background, 1-20 the classes,
                                               255 the "void" border around objects (ignored)
    <root>/ImageSets/Segmentation/train.txt    one <id> per line
    <root>/ImageSets/Segmentation/val.txt

``root`` may also be the folder above, holding ``VOCdevkit/VOC2012`` or ``VOC2012``. VOC's test
masks are not public, so the official ``val`` list is the test split here and validation is
carved, seeded, out of ``train`` (``val_fraction``; with 0 the ``val`` list serves as both).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from cvtasks.data.image_folder import stratified_split
from cvtasks.data.images import file_problem
from cvtasks.data.mask_dataset import Pair
from cvtasks.data.mask_folders import first_few
from cvtasks.data.scan import DuplicateFileError, refuse_shared_files
from cvtasks.data.segmentation_datamodule import SegmentationDataModule
from cvtasks.registry import DATASETS

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
LIST_DIR = ("ImageSets", "Segmentation")
USAGE = "set data.root=PATH, the VOC2012 (or VOC2007) folder or a folder above it"


def find_voc_root(root: str | os.PathLike[str]) -> Path:
    """The folder holding ``JPEGImages``: ``root`` itself, or a VOC year folder below it.

    Raises:
        FileNotFoundError: no such folder; the message says what was looked for.
    """
    root = Path(root).expanduser()
    candidates = [root, *sorted(root.glob("VOC20*")), *sorted(root.glob("VOCdevkit/VOC20*"))]
    for candidate in candidates:
        if (candidate / "JPEGImages").is_dir() and (candidate / "SegmentationClass").is_dir():
            return candidate
    raise FileNotFoundError(
        f"data.root: no Pascal VOC folder at {root}: expected JPEGImages/ and "
        "SegmentationClass/ in it, or in VOC20xx/ or VOCdevkit/VOC20xx/ below it."
    )


def read_voc_list(voc_root: Path, split: str, skip_missing: bool = False) -> list[Pair]:
    """The ``(image, mask)`` pairs of ``ImageSets/Segmentation/<split>.txt``.

    Args:
        voc_root: the folder holding ``JPEGImages``.
        split: ``train``, ``val``, ``trainval``.
        skip_missing: keep pairs whose files are missing or not regular files (the dataset
            skips and counts them) instead of raising.

    Raises:
        FileNotFoundError: the list is missing, or (unless ``skip_missing``) names ids whose
            image or mask is missing or not a regular file; the message names the files.
        DuplicateFileError: the list names an id twice.
    """
    listing = voc_root.joinpath(*LIST_DIR, f"{split}.txt")
    if problem := file_problem(listing):
        raise FileNotFoundError(f"data.root: the split list {listing} {problem}")
    ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    twice = sorted(name for name, count in Counter(ids).items() if count > 1)
    if twice:
        raise DuplicateFileError(
            f"data.root: {listing} names {len(twice)} id(s) more than once ({first_few(twice)}), "
            "so an image would count twice; keep one line per id"
        )
    pairs = []
    problems = []
    for name in ids:
        image = voc_root / "JPEGImages" / f"{name}.jpg"
        mask = voc_root / "SegmentationClass" / f"{name}.png"
        found = {p: file_problem(p) for p in (image, mask)}
        problems += [f"{p} ({why})" for p, why in found.items() if why]
        pairs.append((os.fspath(image), None if found[mask] else os.fspath(mask)))
    if problems and not skip_missing:
        raise FileNotFoundError(
            f"data.root: {len(problems)} file(s) listed in {listing} are missing or not regular "
            f"files: {first_few(problems)}. Set data.on_bad_image=skip to skip (and count) them."
        )
    return pairs


@DATASETS.register("voc_segmentation")
class VOCSegmentationDataModule(SegmentationDataModule):
    """Pascal VOC segmentation (21 classes with background; 255 ignored).

    Args:
        root: the VOC year folder, or a folder above it (see :func:`find_voc_root`); required.
        val_fraction: share of ``train.txt`` carved out for validation; 0 validates on
            ``val.txt``, which is always the test split.
        split_seed: seed of the carving.
        **kwargs: :class:`VisionDataModule` options (batch_size, image_size, augment, ...).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {val_fraction!r}")
        if root is None:
            raise ValueError(f"data.root is not set: {USAGE}")
        self.root = Path(root).expanduser()
        self.val_fraction = val_fraction
        self.split_seed = split_seed

    def scan(self) -> tuple[list[str], dict[str, list[Pair]]]:
        """Read the split lists and pair the files."""
        voc_root = find_voc_root(self.root)
        skip = self.on_bad_image == "skip"
        train = read_voc_list(voc_root, "train", skip)
        test = read_voc_list(voc_root, "val", skip)
        # val.txt is the test split: an image also in train.txt (or a link to one) would leak
        lists = voc_root.joinpath(*LIST_DIR)
        refuse_shared_files(
            [(image, "train.txt") for image, _ in train]
            + [(image, "val.txt") for image, _ in test],
            f"data.root: {lists}",
        )
        if self.val_fraction > 0:
            carved = stratified_split({"all": train}, {"val": self.val_fraction}, self.split_seed)
            splits = {"train": carved["train"]["all"], "val": carved["val"]["all"], "test": test}
        else:
            splits = {"train": train, "val": test, "test": test}
        return list(VOC_CLASSES), splits
