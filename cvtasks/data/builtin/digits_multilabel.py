"""The built-in multi-label dataset: which digits each canvas of ``digits_detection`` holds.

The canvases and COCO files are those of :mod:`~cvtasks.data.builtin.digits_detection` (one to
five digits on each noisy 96x96 canvas, written once into the cache, shared with detection);
the :mod:`~cvtasks.data.coco_multilabel` reader turns each image's boxes into its label set, the
distinct digits drawn on it. The classes are the ten digits ``0``-``9``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cvtasks.data.builtin.base import WrittenOnFirstUse, builtin_root
from cvtasks.data.builtin.digits_detection import SIZE, SPLIT_SIZES, dataset_dir
from cvtasks.data.builtin.digits_detection import write_digits_detection as write_canvases
from cvtasks.data.coco_multilabel import CocoMultilabelDataModule
from cvtasks.registry import DATASETS


class DigitsMultilabelDataModule(WrittenOnFirstUse, CocoMultilabelDataModule):
    """:class:`CocoMultilabelDataModule` over the written canvases, writing them first if needed.

    Args:
        data_root: the folder that holds (or will hold) the dataset folder.
        counts: canvases per split.
        **kwargs: :class:`CocoMultilabelDataModule` options.
    """

    def __init__(
        self, data_root: str | os.PathLike[str], counts: dict[str, int], **kwargs: Any
    ) -> None:
        self.data_root = Path(data_root).expanduser()
        self.counts = counts
        folder = self.data_root / dataset_dir(counts)
        files = {f"{s}_annotations": folder / "annotations" / f"{s}.json" for s in ("val", "test")}
        super().__init__(
            root=folder, annotations=folder / "annotations" / "train.json", **files, **kwargs
        )

    def write_dataset(self) -> Path:
        """Write the canvases under ``data_root`` unless they are there."""
        return write_canvases(self.data_root, self.counts)


@DATASETS.register("digits_multilabel")
def digits_multilabel(
    root: str | os.PathLike[str] | None = None,
    *,
    num_train: int = SPLIT_SIZES["train"],
    num_val: int = SPLIT_SIZES["val"],
    num_test: int = SPLIT_SIZES["test"],
    batch_size: int = 32,
    image_size: int = SIZE,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.5, 0.5, 0.5),
    cache_images: bool = True,
    **kwargs: Any,
) -> DigitsMultilabelDataModule:
    """The built-in multi-label dataset (10 digit classes, 1-5 digits per 96x96 canvas).

    Args:
        root: where to keep the dataset folder; ``None`` means ``default_cache_dir() / "data"``.
        num_train: training canvases.
        num_val: validation canvases.
        num_test: test canvases.
        batch_size: samples per batch.
        image_size: output size (the canvases are 96x96).
        mean: normalization mean.
        std: normalization standard deviation.
        cache_images: keep decoded images in memory.
        **kwargs: other :class:`CocoMultilabelDataModule` options (augment, ...).
    """
    return DigitsMultilabelDataModule(
        builtin_root(root),
        counts={"train": num_train, "val": num_val, "test": num_test},
        batch_size=batch_size,
        image_size=image_size,
        mean=mean,
        std=std,
        cache_images=cache_images,
        **kwargs,
    )
