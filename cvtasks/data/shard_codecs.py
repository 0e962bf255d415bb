"""How each reader's samples go into shards and come back as the same training samples.

A shard sample holds what the reader read from disk, before any transform: the image file's own
bytes (decoded again by :func:`~cvtasks.data.images.decode_image`, orientation and mode rules
included), the targets as JSON, and for masks the checked class indices as a PNG. Coming back,
the reader's own dataset class turns it into a sample (:meth:`ShardCodec.decoder`): the same
albumentations pipeline, the same tensors, so a task cannot tell shards from loose files.

A codec per dataset class: :data:`CODECS` maps the class to its codec; :func:`codec_for` finds
the codec of a split's dataset, or says which readers can be converted.
"""

from __future__ import annotations

import copy
import io
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cvtasks.data.image_folder import ImageFolderDataset
from cvtasks.data.images import decode_image, decode_indices
from cvtasks.data.mask_dataset import ImageMaskDataset
from cvtasks.data.multilabel import MultilabelDataset

Sample = dict[str, Any]
#: a stored sample: JSON targets, the image file's bytes, and codec-specific fields
Stored = dict[str, Any]


class ShardCodec(ABC):
    """Encode a reader's dataset sample into a shard sample, and decode it back.

    Subclasses set :attr:`name` and :attr:`dataset_type` and implement :meth:`record`,
    :meth:`view` and :meth:`fill` (and :meth:`arguments` when samples share constructor
    arguments).
    """

    name = ""
    dataset_type: type = Dataset
    #: the annotation the samples carry (a task's ``target_kind``)
    target_kind = ""
    #: sample keys collated as lists, as the reader's data module lists them
    list_keys: tuple[str, ...] = ()

    def empty_targets(self, height: int, width: int, num_classes: int) -> dict[str, Any]:
        """Zero-length targets of a batch whose every sample was skipped."""
        return {"label": torch.empty(0, dtype=torch.int64)}

    def encode(self, dataset: Any, index: int) -> Stored:
        """Shard sample ``index`` of ``dataset``: its record and image bytes (+ extras)."""
        record = self.record(dataset, index)
        return {"record": json.dumps(record), "image": Path(record["path"]).read_bytes()}

    @abstractmethod
    def record(self, dataset: Any, index: int) -> dict[str, Any]:
        """The JSON-able targets of sample ``index``, with its ``path``."""

    def arguments(self, dataset: Any) -> dict[str, Any]:
        """JSON-able constructor arguments every sample of the split shares."""
        return {}

    @abstractmethod
    def view(self, arguments: dict[str, Any], transform: Callable[..., Any], on_bad: str) -> Any:
        """A dataset of this codec's class holding no samples yet, set up as the reader's."""

    @abstractmethod
    def fill(self, view: Any, record: dict[str, Any], stored: Stored) -> None:
        """Put one decoded sample into ``view`` (a copy) at index 0."""

    def for_split(self, view: Any, split: str) -> None:  # noqa: B027 - a hook, empty by default
        """Set ``view`` up for ``split`` as the reader sets that split's dataset up (here:
        every split alike)."""

    def decoder(
        self, arguments: dict[str, Any], transform: Callable[..., Any], on_bad_image: str
    ) -> Callable[[Stored], Sample | None]:
        """A picklable callable turning a shard sample into the reader's training sample."""
        return _Decoder(self, self.view(arguments, transform, on_bad_image))


class _Decoder:
    """Shard sample → training sample through a one-sample copy of the reader's dataset."""

    def __init__(self, codec: ShardCodec, view: Any) -> None:
        self.codec = codec
        self.view = view

    @property
    def transform(self) -> Any:
        """The albumentations pipeline."""
        return self.view.transform

    def set_random_seed(self, seed: int) -> None:
        """Reseed the pipeline (each DataLoader worker draws its own augmentations)."""
        self.view.transform.set_random_seed(seed)

    def __call__(self, stored: Stored) -> Sample | None:
        record = json.loads(_text(stored["record"]))
        view = copy.copy(self.view)
        self.codec.fill(view, record, stored)
        return view[0]


def _text(value: Any) -> str:
    return bytes(value).decode() if isinstance(value, (bytes, memoryview)) else str(value)


def _image_loader(stored: Stored, name: str) -> Callable[[int], np.ndarray]:
    data = bytes(stored["image"])
    return lambda _index: decode_image(data, name)


class LabelCodec(ShardCodec):
    """Class folders and built-in classification data: one label per image."""

    name = "label"
    dataset_type = ImageFolderDataset
    target_kind = "class"

    def record(self, dataset: ImageFolderDataset, index: int) -> dict[str, Any]:
        path, label = dataset.samples[index]
        return {"path": path, "label": int(label)}

    def view(self, arguments, transform, on_bad):
        return ImageFolderDataset([], transform, on_bad)

    def fill(self, view, record, stored):
        view.samples = [(record["path"], int(record["label"]))]
        view.load_image = _image_loader(stored, record["path"])


class LabelSetCodec(LabelCodec):
    """Multi-label data: a multi-hot row per image."""

    name = "label_set"
    dataset_type = MultilabelDataset
    target_kind = "label_set"

    def empty_targets(self, height: int, width: int, num_classes: int) -> dict[str, Any]:
        return {"labels": torch.empty(0, num_classes, dtype=torch.float32)}

    def record(self, dataset: MultilabelDataset, index: int) -> dict[str, Any]:
        row = dataset.targets[index]
        return {"path": dataset.samples[index][0], "labels": row.nonzero().flatten().tolist()}

    def arguments(self, dataset: MultilabelDataset) -> dict[str, Any]:
        return {"num_classes": int(dataset.targets.shape[1])}

    def view(self, arguments, transform, on_bad):
        empty = torch.zeros(0, int(arguments["num_classes"]))
        return MultilabelDataset([], empty, transform, on_bad)

    def fill(self, view, record, stored):
        row = torch.zeros(1, view.targets.shape[1])
        row[0, record["labels"]] = 1.0
        view.samples = [(record["path"], 0)]
        view.targets = row
        view.load_image = _image_loader(stored, record["path"])


class MaskCodec(ShardCodec):
    """Image and mask pairs: the checked class indices stored as a PNG beside the image."""

    name = "mask"
    dataset_type = ImageMaskDataset
    target_kind = "mask"
    list_keys = ("orig_mask",)

    def empty_targets(self, height: int, width: int, num_classes: int) -> dict[str, Any]:
        return {
            "mask": torch.empty(0, height, width, dtype=torch.int64),
            "orig_size": torch.empty(0, 2, dtype=torch.int64),
            "orig_mask": [],
        }

    def encode(self, dataset: ImageMaskDataset, index: int) -> Stored:
        _image, mask = dataset.load(index)  # read and checked as training reads them
        png = io.BytesIO()
        Image.fromarray(mask.astype(np.uint8), mode="L").save(png, format="PNG")
        return {**super().encode(dataset, index), "mask": png.getvalue()}

    def record(self, dataset: ImageMaskDataset, index: int) -> dict[str, Any]:
        image, mask = dataset.pairs[index]
        return {"path": image, "mask_path": mask}

    def arguments(self, dataset: ImageMaskDataset) -> dict[str, Any]:
        return {"num_classes": dataset.num_classes}

    def view(self, arguments, transform, on_bad):
        return ImageMaskDataset([], transform, int(arguments["num_classes"]), on_bad)

    def fill(self, view, record, stored):
        image = decode_image(bytes(stored["image"]), record["path"])
        mask = decode_indices(bytes(stored["mask"]), record["mask_path"])
        view.pairs = [(record["path"], record["mask_path"])]
        view.load = lambda _index: (image, mask)

    def for_split(self, view, split):
        # as SegmentationDataModule: the test split is scored at each image's own size
        view.original_mask = split == "test"


#: dataset class → codec (exact classes: a subclass may carry targets its base does not)
CODECS: dict[type, ShardCodec] = {
    codec.dataset_type: codec for codec in (LabelCodec(), LabelSetCodec(), MaskCodec())
}
BY_NAME: dict[str, ShardCodec] = {codec.name: codec for codec in CODECS.values()}


def codec_for(dataset: Any, reader: str) -> ShardCodec:
    """The codec of ``dataset``'s class, else a ``ValueError`` naming what converts.

    Only exact classes match: a subclass may add targets (keypoints on top of class folders)
    that its base's codec would drop.
    """
    codec = CODECS.get(type(dataset))
    if codec is not None:
        return codec
    kinds = ", ".join(sorted(c.__name__ for c in CODECS))
    raise ValueError(
        f"data={reader}: its samples ({type(dataset).__name__}) cannot be written as shards "
        f"yet; data convert writes readers whose samples are {kinds}"
    )
