"""Codecs of image-level targets: class labels, label sets, masks."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from PIL import Image

from cvtasks.data.image_folder import ImageFolderDataset
from cvtasks.data.images import decode_image, decode_indices
from cvtasks.data.mask_dataset import ImageMaskDataset
from cvtasks.data.multilabel import MultilabelDataset, empty_label_sets
from cvtasks.data.segmentation_datamodule import empty_mask_targets, mask_compose_kwargs
from cvtasks.data.shard_codecs.base import ShardCodec, Stored, image_loader


class LabelCodec(ShardCodec):
    """Class folders and built-in classification data: one label per image."""

    name = "label"
    dataset_types = (ImageFolderDataset,)
    target_kind = "class"

    def record(self, dataset: ImageFolderDataset, index: int) -> dict[str, Any]:
        path, label = dataset.samples[index]
        return {"path": path, "label": int(label)}

    def view(self, arguments, transform, on_bad, split):
        return ImageFolderDataset([], transform, on_bad)

    def fill(self, view, record, stored):
        view.samples = [(record["path"], int(record["label"]))]
        view.load_image = image_loader(stored, record["path"])


class LabelSetCodec(LabelCodec):
    """Multi-label data: a multi-hot row per image."""

    name = "label_set"
    dataset_types = (MultilabelDataset,)
    target_kind = "label_set"

    def empty_batch(self, base, meta):
        return {"image": base["image"], **empty_label_sets(len(meta["class_names"]))}

    def record(self, dataset: MultilabelDataset, index: int) -> dict[str, Any]:
        row = dataset.targets[index]
        return {"path": dataset.samples[index][0], "labels": row.nonzero().flatten().tolist()}

    def arguments(self, dataset: MultilabelDataset) -> dict[str, Any]:
        return {"num_classes": int(dataset.targets.shape[1])}

    def view(self, arguments, transform, on_bad, split):
        empty = torch.zeros(0, int(arguments["num_classes"]))
        return MultilabelDataset([], empty, transform, on_bad)

    def fill(self, view, record, stored):
        row = torch.zeros(1, view.targets.shape[1])
        row[0, record["labels"]] = 1.0
        view.samples = [(record["path"], 0)]
        view.targets = row
        view.load_image = image_loader(stored, record["path"])


class MaskCodec(ShardCodec):
    """Image and mask pairs: the checked class indices stored as a PNG beside the image."""

    name = "mask"
    dataset_types = (ImageMaskDataset,)
    target_kind = "mask"
    list_keys = ("orig_mask",)

    def empty_batch(self, base, meta):
        height, width = base["image"].shape[-2:]
        return {"image": base["image"], **empty_mask_targets(height, width)}

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

    def compose_kwargs(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return mask_compose_kwargs()

    def view(self, arguments, transform, on_bad, split):
        view = ImageMaskDataset([], transform, int(arguments["num_classes"]), on_bad)
        # as SegmentationDataModule: the test split is scored at each image's own size
        view.original_mask = split == "test"
        return view

    def fill(self, view, record, stored):
        image = decode_image(bytes(stored["image"]), record["path"])
        mask = decode_indices(bytes(stored["mask"]), record["mask_path"])
        view.pairs = [(record["path"], record["mask_path"])]
        view.load = lambda _index: (image, mask)
