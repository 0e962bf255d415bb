"""Multi-label image data: each image with a set of class names, read as multi-hot targets.

The readers of label sets (:mod:`~cvtasks.data.multilabel_csv`,
:mod:`~cvtasks.data.coco_multilabel`) turn their files into
:class:`LabelledImage` rows; :class:`MultilabelDataModule` splits the rows (a split each row
names, else carved out of train as ``image_folder`` carves, seeded) and serves
``{"image": float[3,H,W], "labels": float[C]}`` samples.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cvtasks.data.datamodule import VisionDataModule
from cvtasks.data.image_folder import ImageFolderDataset, stratified_split

SPLITS = ("train", "val", "test")


def empty_label_sets(num_classes: int) -> dict[str, torch.Tensor]:
    """The targets of a batch of no image: ``labels: float[0, C]``."""
    return {"labels": torch.empty(0, num_classes, dtype=torch.float32)}


@dataclass(frozen=True)
class LabelledImage:
    """One image and the names of the classes in it.

    Attributes:
        path: the image file.
        labels: the class names present (empty: none of the classes).
        split: ``train``, ``val`` or ``test`` when the source says, else ``None`` (train, from
            which missing splits are carved).
    """

    path: str
    labels: frozenset[str]
    split: str | None = None


class MultilabelDataset(ImageFolderDataset):
    """Image files with multi-hot targets: samples ``{"image", "labels": float[C]}``.

    Args:
        paths: the image files.
        targets: ``[N, C]`` multi-hot rows, row ``k`` for ``paths[k]``.
        transform: an albumentations pipeline called as ``transform(image=array)``.
        on_bad_image: see :class:`ImageFolderDataset`.
        cache_images: see :class:`ImageFolderDataset`.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        targets: torch.Tensor,
        transform: Callable[..., dict[str, Any]],
        on_bad_image: str = "error",
        cache_images: bool = False,
    ) -> None:
        if len(paths) != len(targets):
            raise ValueError(f"{len(paths)} image paths for {len(targets)} target rows")
        # a sample's integer label is its row in ``targets``
        super().__init__(
            [(path, k) for k, path in enumerate(paths)], transform, on_bad_image, cache_images
        )
        self.targets = targets.float()

    def __getitem__(self, index: int) -> dict[str, torch.Tensor] | None:
        sample = super().__getitem__(index)
        if sample is None:
            return None
        return {"image": sample["image"], "labels": self.targets[index]}


def multi_hot(rows: Sequence[LabelledImage], class_names: Sequence[str]) -> torch.Tensor:
    """``[len(rows), len(class_names)]`` targets: 1 where the row has the class."""
    index = {name: i for i, name in enumerate(class_names)}
    targets = torch.zeros(len(rows), len(class_names))
    for k, row in enumerate(rows):
        for name in row.labels:
            targets[k, index[name]] = 1.0
    return targets


def split_rows(
    rows: Sequence[LabelledImage], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[LabelledImage]]:
    """Rows by split: those a row names, and val/test carved (seeded) out of the rest when no
    row names them."""
    named = {split: [r for r in rows if r.split == split] for split in SPLITS}
    train = [r for r in rows if r.split in (None, "train")]
    fractions = {"val": val_fraction, "test": test_fraction}
    missing = {split: f for split, f in fractions.items() if not named[split]}
    carved = stratified_split({"images": train}, missing, seed)
    result = {split: named[split] for split in ("val", "test") if split not in missing}
    result.update({split: items["images"] for split, items in carved.items()})
    return {split: sorted(result[split], key=lambda r: r.path) for split in SPLITS}


class MultilabelDataModule(VisionDataModule):
    """Base of the multi-label readers: subclasses list the rows, this class splits and serves.

    Args:
        val_fraction: share of train carved out for validation when no row is in ``val``.
        test_fraction: the same for ``test``.
        split_seed: seed of the carving.
        **kwargs: :class:`VisionDataModule` options.
    """

    target_kind = "label_set"

    def __init__(
        self,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for key, value in (
            ("data.val_fraction", val_fraction),
            ("data.test_fraction", test_fraction),
        ):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{key} must be in [0, 1), got {value!r}")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                "data.val_fraction + data.test_fraction must be below 1 to leave training "
                f"images; got {val_fraction} + {test_fraction}"
            )
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.split_seed = split_seed
        self._splits: dict[str, list[LabelledImage]] | None = None

    def prepare_root(self) -> None:
        """Make the files exist before they are read; a no-op here, built-in datasets write them."""

    @abstractmethod
    def read_rows(self) -> list[LabelledImage]:
        """Every image of the source with its label names; subclasses read their format."""

    @property
    def splits(self) -> dict[str, list[LabelledImage]]:
        """``{"train": rows, "val": rows, "test": rows}``, read and split once."""
        if self._splits is None:
            self.prepare_root()
            rows = self.read_rows()
            used = {name for row in rows for name in row.labels}
            self.class_names = self.declared_class_names() or sorted(used)
            if not used:
                raise ValueError(f"{self.source_name()}: no image has a label; nothing to learn")
            self._splits = split_rows(rows, self.val_fraction, self.test_fraction, self.split_seed)
        return self._splits

    def declared_class_names(self) -> list[str] | None:
        """The class list the source declares, in its order (COCO's categories), after
        :meth:`read_rows`; ``None``: the sorted names the rows use."""
        return None

    def source_name(self) -> str:
        """The file the rows come from, for messages."""
        return type(self).__name__

    def discover_class_names(self) -> list[str]:
        """Read the rows (once): the sorted names of every label they use."""
        _ = self.splits
        return self.class_names

    def empty_batch(self) -> dict[str, torch.Tensor]:
        """An image batch of none, with ``labels: float[0, C]``."""
        height, width = self.image_size
        return {
            "image": torch.empty(0, len(self.mean), height, width, dtype=torch.float32),
            **empty_label_sets(self.num_classes),
        }

    def setup(self, stage: str | None = None) -> None:
        """Read and split the rows (once) and build the datasets; every stage gets all four."""
        if self.train_dataset is not None:
            return
        splits = self.splits

        def dataset(split: str, transform: Callable[..., dict[str, Any]]) -> MultilabelDataset:
            rows = splits[split]
            return MultilabelDataset(
                [r.path for r in rows],
                multi_hot(rows, self.class_names),
                transform,
                self.on_bad_image,
                cache_images=self.cache_images,
            )

        self.train_dataset = dataset("train", self.train_transform)
        self.val_dataset = dataset("val", self.eval_transform)
        self.test_dataset = dataset("test", self.eval_transform)
        self.predict_dataset = self.test_dataset
