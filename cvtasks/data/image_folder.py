"""Class-folder datasets (``root/<class>/<image>``), the layout torchvision's ImageFolder reads.

Two layouts are understood:

- ``root/train/<class>/...`` with optional ``root/val`` (or ``valid``, ``validation``) and
  ``root/test``; a missing val or test split is carved out of train;
- ``root/<class>/...``: train, val and test are all carved out of the class folders.

Carving is stratified per class and seeded, so the same files give the same splits everywhere.
Folders are listed by :class:`~cvtasks.data.scan.FolderScan`: each real file once, links leaving
the root only with ``follow_links``, and a file reachable from two class folders (or from train
and test) is an error naming both paths.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from cvtasks.data.datamodule import ON_BAD_IMAGE, VisionDataModule, check_choice
from cvtasks.data.images import IMAGE_EXTENSIONS, BadImageError, load_or_skip, read_image
from cvtasks.data.scan import FolderScan
from cvtasks.registry import DATASETS

T = TypeVar("T")
Sample = tuple[str, int]

VAL_DIRS = ("val", "valid", "validation")
TEST_DIRS = ("test",)


class ImageFolderDataset(Dataset):
    """Labelled image files, read with :func:`read_image` and passed through ``transform``.

    Args:
        samples: ``(path, label)`` pairs.
        transform: an albumentations pipeline called as ``transform(image=array)``.
        on_bad_image: ``"error"`` raises :class:`BadImageError`; ``"skip"`` warns
            (:class:`BadImageWarning`) and returns ``None``, which the DataModule's collate
            function drops and counts.
        cache_images: keep each decoded image in memory after its first read. Each DataLoader
            worker holds its own cache, so this pays off with ``num_workers=0`` or persistent
            workers.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str | os.PathLike[str], int]],
        transform: Callable[..., dict[str, Any]],
        on_bad_image: str = "error",
        cache_images: bool = False,
    ) -> None:
        check_choice("data.on_bad_image", on_bad_image, ON_BAD_IMAGE)
        # Plain strings and ints: cheap to pickle into worker processes.
        self.samples: list[Sample] = [(os.fspath(p), int(label)) for p, label in samples]
        self.transform = transform
        self.on_bad_image = on_bad_image
        self.cache_images = cache_images
        self._cache: dict[int, np.ndarray | BadImageError] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, index: int) -> np.ndarray:
        """The decoded ``uint8`` RGB image of sample ``index``, before any transform.

        Raises:
            BadImageError: the file cannot be decoded.
        """
        if not self.cache_images:
            return read_image(self.samples[index][0])
        if index not in self._cache:
            try:
                self._cache[index] = read_image(self.samples[index][0])
            except BadImageError as err:
                self._cache[index] = err  # remember failures too: decoding again fails again
        cached = self._cache[index]
        if isinstance(cached, BadImageError):
            raise cached
        return cached.copy()  # a transform must never alter the cached pixels

    def __getitem__(self, index: int) -> dict[str, torch.Tensor] | None:
        image = load_or_skip(self.load_image, index, self.on_bad_image)
        if image is None:
            return None
        return {
            "image": self.transform(image=image)["image"],
            "label": torch.tensor(self.samples[index][1], dtype=torch.int64),
        }


@DATASETS.register("image_folder")
class ImageFolderDataModule(VisionDataModule):
    """Images in class folders, split into train/val/test (see the module docstring).

    Args:
        root: the dataset folder.
        val_fraction: share of each class carved out for validation when there is no val folder.
        test_fraction: share of each class carved out for testing when there is no test folder.
        split_seed: seed of the carving; the same seed and files give the same splits.
        follow_links: also follow symbolic links that leave ``root`` (links inside it are
            always followed, each real file is listed once).
        **kwargs: :class:`VisionDataModule` options (batch_size, image_size, augment, ...).
    """

    target_kind = "class"

    def __init__(
        self,
        root: str | os.PathLike[str],
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        follow_links: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_choice("data.follow_links", follow_links, (False, True))
        for key, value in (
            ("data.val_fraction", val_fraction),
            ("data.test_fraction", test_fraction),
        ):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{key} must be in [0, 1), got {value!r}")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"data.val_fraction + data.test_fraction must be below 1 to leave training images; "
                f"got {val_fraction} + {test_fraction}"
            )
        self.root = Path(root).expanduser()
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.follow_links = bool(follow_links)
        self._splits: dict[str, list[Sample]] | None = None

    def prepare_root(self) -> None:
        """Make ``root`` exist before it is scanned; a no-op here, built-in datasets write it."""

    @property
    def splits(self) -> dict[str, list[Sample]]:
        """``{"train": [(path, label), ...], "val": [...], "test": [...]}``, scanned once."""
        if self._splits is None:
            self.prepare_root()
            self.class_names, self._splits = scan_image_folder(
                self.root,
                val_fraction=self.val_fraction,
                test_fraction=self.test_fraction,
                seed=self.split_seed,
                follow_links=self.follow_links,
                on_empty=self.on_bad_image,
            )
        return self._splits

    def discover_class_names(self) -> list[str]:
        """Scan the folders (once) and return the class folder names of train."""
        _ = self.splits  # the scan sets the class names
        return self.class_names

    def setup(self, stage: str | None = None) -> None:
        """Scan the folders (once) and build the datasets; every stage gets all four."""
        if self.train_dataset is not None:
            return
        splits = self.splits

        def dataset(split: str, transform: Callable[..., dict[str, Any]]) -> ImageFolderDataset:
            return ImageFolderDataset(
                splits[split], transform, self.on_bad_image, cache_images=self.cache_images
            )

        self.train_dataset = dataset("train", self.train_transform)
        self.val_dataset = dataset("val", self.eval_transform)
        self.test_dataset = dataset("test", self.eval_transform)
        self.predict_dataset = self.test_dataset


def scan_image_folder(
    root: str | os.PathLike[str],
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    follow_links: bool = False,
    on_empty: str = "error",
) -> tuple[list[str], dict[str, list[Sample]]]:
    """List the images under ``root`` and split them into train, val and test.

    What the scan passed over (links leaving ``root``, loops, duplicates, special files) is
    reported in one :class:`~cvtasks.data.scan.DataScanWarning`.

    Args:
        root: the dataset folder, in one of the two layouts of this module.
        val_fraction: share of each class carved out of train when there is no val folder.
        test_fraction: the same for a missing test folder.
        seed: seed of the carving.
        follow_links: also follow links leaving ``root``.
        on_empty: ``"error"`` raises for empty (0-byte) image files; ``"skip"`` leaves them out.

    Returns:
        ``(class_names, {"train": samples, "val": samples, "test": samples})``; class names are
        the sorted class folder names of train, labels index them, samples are sorted by path.

    Raises:
        FileNotFoundError: ``root`` is missing, or holds no class folders or no images.
        ValueError: a val/test folder has a class that train lacks, the layout is ambiguous,
            a file is reachable from two class or split folders, or an image file is empty.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise FileNotFoundError(
            f"data.root: the dataset folder {root} {what}. Set data.root=<path>."
        )
    scan = FolderScan(root, follow_links, on_empty)
    with scan.reporting():
        class_names, by_split = _scan_splits(scan, root, val_fraction, test_fraction, seed)
    labels = {name: i for i, name in enumerate(class_names)}
    splits = {
        split: sorted(
            (path, labels[name]) for name, paths in by_split[split].items() for path in paths
        )
        for split in ("train", "val", "test")
    }
    return class_names, splits


def _scan_splits(
    scan: FolderScan, root: Path, val_fraction: float, test_fraction: float, seed: int
) -> tuple[list[str], dict[str, dict[str, list[str]]]]:
    """Class names and ``{split: {class: paths}}`` of either layout."""
    train_dir = root / "train"
    if train_dir.is_dir():
        class_names = _class_folders(scan, train_dir)
        train = _images_by_class(scan, train_dir, class_names, require_images=True)
        fixed: dict[str, dict[str, list[str]]] = {}
        for split, names in (("val", VAL_DIRS), ("test", TEST_DIRS)):
            folder = _split_folder(root, names)
            if folder is not None:
                classes = _check_classes(scan, folder, class_names, train_dir)
                fixed[split] = _images_by_class(scan, folder, classes, require_images=False)
        fractions = {"val": val_fraction, "test": test_fraction}
        carved = stratified_split(
            train, {s: f for s, f in fractions.items() if s not in fixed}, seed
        )
        return class_names, {**carved, **fixed}
    strays = [n for n in (*VAL_DIRS, *TEST_DIRS) if (root / n).is_dir()]
    if strays:
        raise ValueError(
            f"data.root: {root} has {', '.join(strays)} but no 'train' folder. Put the "
            f"training class folders in {train_dir}, or drop the split folders and let the "
            "splits be carved from the class folders."
        )
    class_names = _class_folders(scan, root)
    by_split = stratified_split(
        _images_by_class(scan, root, class_names, require_images=True),
        {"val": val_fraction, "test": test_fraction},
        seed,
    )
    return class_names, by_split


def stratified_split(
    groups: Mapping[str, Sequence[T]], fractions: Mapping[str, float], seed: int
) -> dict[str, dict[str, list[T]]]:
    """Carve seeded, per-group shares out of every group; the rest is ``"train"``.

    Each split's total is ``round(N * fraction)``, spread over the groups in proportion to their
    sizes (largest remainder first), and every non-empty group keeps at least one item in train.
    A group's shuffle is seeded by ``seed`` and the group's name, so adding a group does not
    reshuffle the others.

    Args:
        groups: items per group (class), in a fixed order.
        fractions: split name → share, e.g. ``{"val": 0.15, "test": 0.15}``, applied in order.
        seed: the seed.

    Returns:
        ``{"train": {group: items}, <split>: {group: items}, ...}``.
    """
    names = list(groups)
    sizes = [len(groups[name]) for name in names]
    quotas = {split: _apportion(sizes, fraction) for split, fraction in fractions.items()}
    result: dict[str, dict[str, list[T]]] = {"train": {}, **{split: {} for split in fractions}}
    for g, name in enumerate(names):
        items = list(groups[name])
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        shuffled = [items[i] for i in rng.permutation(len(items))]
        start = 0
        for split in fractions:
            take = max(0, min(quotas[split][g], len(items) - start - 1))
            result[split][name] = shuffled[start : start + take]
            start += take
        result["train"][name] = shuffled[start:]
    return result


def _apportion(sizes: list[int], fraction: float) -> list[int]:
    """Integers close to ``size * fraction`` summing to ``round(sum(sizes) * fraction)``."""
    quotas = [size * fraction for size in sizes]
    counts = [math.floor(q + 1e-9) for q in quotas]
    missing = math.floor(sum(sizes) * fraction + 0.5) - sum(counts)
    by_remainder = sorted(range(len(sizes)), key=lambda i: (counts[i] - quotas[i], i))
    for i in by_remainder[: max(0, missing)]:
        counts[i] += 1
    return counts


def _class_folders(scan: FolderScan, folder: Path) -> list[str]:
    names = [p.name for p in scan.folders(folder, "class folders")]
    if not names:
        raise FileNotFoundError(
            f"data.root: no class folders in {folder}; expected {folder}/<class>/<image> "
            f"with images ending in {', '.join(IMAGE_EXTENSIONS)}."
        )
    return names


def _images_by_class(
    scan: FolderScan, folder: Path, class_names: Sequence[str], require_images: bool
) -> dict[str, list[str]]:
    """Sorted image paths under each ``folder/<class>`` (recursively, by ``scan``'s rules).

    With ``require_images`` an empty class folder is an error: it would be a class that no
    image teaches.
    """
    found: dict[str, list[str]] = {}
    for name in class_names:
        group = os.path.relpath(folder / name, scan.root)  # "train/cat": class of a split
        found[name] = scan.files(folder / name, group)
    if require_images:
        empty = [name for name, paths in found.items() if not paths]
        if empty:
            raise FileNotFoundError(
                f"data.root: no images in class folder(s) {', '.join(empty)} of {folder}; "
                f"images must end in {', '.join(IMAGE_EXTENSIONS)}."
            )
    return found


def _split_folder(root: Path, names: Sequence[str]) -> Path | None:
    present = [root / n for n in names if (root / n).is_dir()]
    if len(present) > 1:
        raise ValueError(
            f"data.root: {root} has {' and '.join(p.name for p in present)}; keep one of them."
        )
    return present[0] if present else None


def _check_classes(
    scan: FolderScan, folder: Path, class_names: Sequence[str], train_dir: Path
) -> list[str]:
    """The class folders of a val/test ``folder``, which must all exist in train."""
    names = [p.name for p in scan.folders(folder, "class folders")]
    unknown = [n for n in names if n not in class_names]
    if unknown:
        shown = ", ".join(class_names[:20]) + (", ..." if len(class_names) > 20 else "")
        raise ValueError(
            f"data.root: {folder} has class folder(s) {', '.join(unknown)} that {train_dir} "
            f"lacks; labels come from train's classes ({shown})."
        )
    return names
