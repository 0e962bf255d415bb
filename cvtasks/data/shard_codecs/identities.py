"""Codec of identity data: training images with their identity, evaluation pairs.

Training samples are ``(image, identity)``; the identity of every written training sample also
goes into the index (``train_labels``), because P x K batches
(:class:`~cvtasks.data.identity_sampler.IdentityBatchSampler`) are drawn from all of them up
front. So identity shards are not streamed in training: the reader's sampler picks indices and
the samples are read by index (LitData's random access), which keeps the P x K batches, the
split over ranks and the mid-epoch resumption of loose files. A pair of the val and test splits
is one shard sample holding both images' bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cvtasks.data.identity_folders import (
    IdentityImageDataset,
    PairDataset,
    empty_identity_batch,
)
from cvtasks.data.image_folder import ImageFolderDataset
from cvtasks.data.images import decode_image
from cvtasks.data.shard_codecs.base import ShardCodec, Stored, image_loader


class IdentityCodec(ShardCodec):
    """Identity folders and built-in identity data (see the module docstring)."""

    name = "identity"
    dataset_types = (IdentityImageDataset, PairDataset)
    target_kind = "identity"
    streams_training = False
    indexes_labels = True

    def empty_batch(self, base, meta):
        return empty_identity_batch(base["image"])

    def datamodule_arguments(self, datamodule: Any) -> dict[str, Any]:
        return {"batching": dict(datamodule.batching)}  # P, K and chunks of the training batches

    def encode(self, dataset: Any, index: int) -> Stored:
        if not isinstance(dataset, PairDataset):
            return super().encode(dataset, index)
        record = self.record(dataset, index)
        return {
            "record": json.dumps(record),
            "image": Path(record["path"]).read_bytes(),
            "image_b": Path(record["path_b"]).read_bytes(),
        }

    def record(self, dataset: Any, index: int) -> dict[str, Any]:
        if isinstance(dataset, PairDataset):
            a, b, same = dataset.pairs[index]
            paths = dataset.images.samples
            return {"path": paths[a][0], "path_b": paths[b][0], "same": int(same)}
        path, label = dataset.samples[index]
        return {"path": path, "label": int(label)}

    def view(self, arguments, transform, on_bad, split):
        if split == "train":
            return IdentityImageDataset([], transform, on_bad)
        return PairDataset([], transform, on_bad)

    def fill(self, view, record, stored):
        if isinstance(view, IdentityImageDataset):
            view.samples = [(record["path"], int(record["label"]))]
            view.load_image = image_loader(stored, record["path"])
            return
        a, b = record["path"], record["path_b"]
        images = [
            decode_image(bytes(stored[key]), path) for key, path in (("image", a), ("image_b", b))
        ]
        view.pairs = [(0, 1, int(record["same"]))]
        view.images = ImageFolderDataset([(a, 0), (b, 0)], view.transform, view.on_bad_image)
        view.images.load_image = lambda index: images[index]
