"""The codec contract: a reader's dataset sample into a shard sample, and back.

A shard sample holds what the reader read from disk, before any transform: the image file's own
bytes (decoded again by :func:`~cvtasks.data.images.decode_image`, orientation and mode rules
included), the targets as JSON, and codec-specific extras (a mask's checked class indices as a
PNG, a pair's second image). Coming back, the reader's own dataset class turns it into a sample
(:meth:`ShardCodec.decoder`): the same albumentations pipeline, the same tensors, so a task
cannot tell shards from loose files.
"""

from __future__ import annotations

import copy
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from cvtasks.data.images import decode_image

Sample = dict[str, Any]
#: a stored sample: JSON targets, the image file's bytes, and codec-specific fields
Stored = dict[str, Any]


class ShardCodec(ABC):
    """Encode a reader's dataset sample into a shard sample, and decode it back.

    Subclasses set :attr:`name`, :attr:`dataset_types` and :attr:`target_kind`, and implement
    :meth:`record`, :meth:`view` and :meth:`fill` (and :meth:`arguments` when samples share
    constructor arguments, :meth:`compose_kwargs` when the pipeline moves targets with the
    image, :meth:`empty_batch` for the targets of a batch of none).
    """

    name = ""
    #: the reader's dataset classes this codec writes (exact classes)
    dataset_types: tuple[type, ...] = (Dataset,)
    #: the annotation the samples carry (a task's ``target_kind``)
    target_kind = ""
    #: sample keys collated as lists, as the reader's data module lists them
    list_keys: tuple[str, ...] = ()
    #: whether training streams the split (LitData's loader); ``False``: the reader's own
    #: sampler over indices (:meth:`train_loader`)
    streams_training = True
    #: per written training sample, the record's ``label`` goes into the index
    #: (``train_labels``), for samplers that need every label up front
    indexes_labels = False

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

    def datamodule_arguments(self, datamodule: Any) -> dict[str, Any]:
        """JSON-able settings of the reader's data module that reading back needs."""
        return {}

    def compose_kwargs(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """``A.Compose`` keywords the reader's pipelines are built with (``bbox_params``, ...)."""
        return {}

    def empty_batch(self, base: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        """The batch of a batch whose every sample was skipped.

        Args:
            base: the image-only empty batch (``image`` of zero images, ``label``).
            meta: the shard index (class names, task keys, arguments).
        """
        return base

    @abstractmethod
    def view(
        self, arguments: dict[str, Any], transform: Callable[..., Any], on_bad: str, split: str
    ) -> Any:
        """A dataset of the reader's class for ``split`` holding no samples yet, set up as the
        reader sets that split's dataset up."""

    @abstractmethod
    def fill(self, view: Any, record: dict[str, Any], stored: Stored) -> None:
        """Put one decoded sample into ``view`` (a copy) at index 0."""

    def decoder(
        self, arguments: dict[str, Any], transform: Callable[..., Any], on_bad: str, split: str
    ) -> Decoder:
        """A picklable callable turning a shard sample of ``split`` into the reader's sample."""
        return Decoder(self, self.view(arguments, transform, on_bad, split))


class Decoder:
    """Shard sample → training sample through a one-sample copy of the reader's dataset."""

    def __init__(self, codec: ShardCodec, view: Any) -> None:
        self.codec = codec
        self.view = view

    @property
    def transform(self) -> Any:
        """The dataset's transform (the albumentations pipeline, or its wrapper)."""
        return self.view.transform

    def set_random_seed(self, seed: int) -> None:
        """Reseed the pipeline (each DataLoader worker draws its own augmentations)."""
        self.view.transform.set_random_seed(seed)

    def filled(self, stored: Stored) -> Any:
        """A one-sample copy of the reader's dataset holding ``stored``."""
        record = json.loads(text(stored["record"]))
        view = copy.copy(self.view)
        self.codec.fill(view, record, stored)
        return view

    def __call__(self, stored: Stored, index: int | None = None) -> Sample | None:
        sample = self.filled(stored)[0]
        if index is not None and sample is not None and "index" in sample:
            sample["index"] = sample["index"].new_tensor(index)  # its index in the split
        return sample


def text(value: Any) -> str:
    """A stored string field (LitData gives bytes or str)."""
    return bytes(value).decode() if isinstance(value, (bytes, memoryview)) else str(value)


def image_loader(stored: Stored, name: str, key: str = "image") -> Callable[[int], np.ndarray]:
    """``load_image(index)`` of a one-sample view: the stored bytes, decoded."""
    data = bytes(stored[key])
    return lambda _index: decode_image(data, name)
