"""Codecs of object-level targets: one box, many boxes, keypoints.

The readers' annotations are checked when the shards are written: each image is decoded and
compared with the size its annotation declares (:meth:`AnnotatedImages.load_image`), so a sample
that training would refuse is refused (or skipped) by ``data convert`` instead. The pipelines'
box and point handling travels in the index (:meth:`ShardCodec.compose_kwargs`).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import albumentations as A
import numpy as np

from cvtasks.data.boxes import BoxDataset, BoxSample, empty_box_targets
from cvtasks.data.detection import (
    DETECTION_KEYS,
    DetectionDataset,
    DetectionSample,
    empty_detection_targets,
)
from cvtasks.data.keypoint_dataset import (
    KeypointDataset,
    KeypointSample,
    KeypointTransform,
    empty_keypoint_targets,
    keypoint_compose_kwargs,
)
from cvtasks.data.shard_codecs.base import ShardCodec, Stored, image_loader


def _bbox_arguments(dataset: Any) -> dict[str, Any]:
    """The split pipeline's box handling, as ``A.BboxParams`` keywords."""
    return {"bbox_params": dataset.transform.processors["bboxes"].params.to_dict_private()}


class _AnnotatedCodec(ShardCodec):
    """Box readers' samples: checked against their declared size as they are written."""

    def encode(self, dataset: Any, index: int) -> Stored:
        dataset.load_image(index)  # decoded and size-checked as training will
        return super().encode(dataset, index)

    def arguments(self, dataset: Any) -> dict[str, Any]:
        return _bbox_arguments(dataset)

    def compose_kwargs(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"bbox_params": A.BboxParams(**arguments["bbox_params"])}

    def fill(self, view, record, stored):
        view.samples = [self.sample(record)]
        view.load_image = image_loader(stored, record["path"])

    @abstractmethod
    def sample(self, record: dict[str, Any]) -> Any:
        """The reader's sample of a record."""


class BoxCodec(_AnnotatedCodec):
    """Single-object localization: one class and box (or *nothing*) per image."""

    name = "box"
    dataset_types = (BoxDataset,)
    target_kind = "box"

    def empty_batch(self, base, meta):
        return {**base, **empty_box_targets()}

    def record(self, dataset: BoxDataset, index: int) -> dict[str, Any]:
        sample: BoxSample = dataset.samples[index]
        box = None if sample.box is None else [float(v) for v in sample.box]
        return {
            "path": sample.path,
            "label": int(sample.label),
            "box": box,
            "size": list(sample.size),
            "source": sample.source,
        }

    def view(self, arguments, transform, on_bad, split):
        return BoxDataset([], transform, on_bad)

    def sample(self, record):
        box = None if record["box"] is None else tuple(record["box"])
        size = tuple(record["size"])
        return BoxSample(record["path"], int(record["label"]), box, size, record["source"])


class DetectionCodec(_AnnotatedCodec):
    """Detection: every object's box, class and crowd flag per image."""

    name = "objects"
    dataset_types = (DetectionDataset,)
    target_kind = "objects"
    list_keys = DETECTION_KEYS

    def empty_batch(self, base, meta):
        return {"image": base["image"], **empty_detection_targets()}

    def record(self, dataset: DetectionDataset, index: int) -> dict[str, Any]:
        sample: DetectionSample = dataset.samples[index]
        return {
            "path": sample.path,
            "boxes": [[float(v) for v in box] for box in sample.boxes],
            "labels": [int(v) for v in sample.labels],
            "crowd": [bool(v) for v in sample.crowd],
            "size": list(sample.size),
            "source": sample.source,
        }

    def view(self, arguments, transform, on_bad, split):
        return DetectionDataset([], transform, on_bad)

    def sample(self, record):
        return DetectionSample(
            record["path"],
            tuple(tuple(box) for box in record["boxes"]),
            tuple(record["labels"]),
            tuple(record["crowd"]),
            tuple(record["size"]),
            record["source"],
        )


class KeypointCodec(ShardCodec):
    """Landmarks: one object's points, COCO visibility flags and box per sample."""

    name = "keypoints"
    dataset_types = (KeypointDataset,)
    target_kind = "keypoints"

    def empty_batch(self, base, meta):
        k = int(meta["task_keys"]["num_keypoints"])
        return {"image": base["image"], **empty_keypoint_targets(k)}

    def record(self, dataset: KeypointDataset, index: int) -> dict[str, Any]:
        sample: KeypointSample = dataset.keypoint_samples[index]
        return {
            "path": sample.path,
            "keypoints": np.asarray(sample.keypoints, np.float64).tolist(),
            "flags": np.asarray(sample.flags).astype(int).tolist(),
            "box": None if sample.box is None else [float(v) for v in sample.box],
            "image_id": int(sample.image_id),
            "size": None if sample.size is None else list(sample.size),
        }

    def arguments(self, dataset: KeypointDataset) -> dict[str, Any]:
        return {
            "flip_pairs": [list(pair) for pair in dataset.transform.flip_pairs],
            "crop_to_box": dataset.crop_to_box,
            "box_padding": dataset.box_padding,
            "min_visibility": dataset.min_visibility,
        }

    def compose_kwargs(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return keypoint_compose_kwargs()

    def view(self, arguments, transform, on_bad, split):
        return KeypointDataset(
            [],
            KeypointTransform(transform, [tuple(p) for p in arguments["flip_pairs"]]),
            on_bad,
            crop_to_box=bool(arguments["crop_to_box"]),
            box_padding=float(arguments["box_padding"]),
            min_visibility=int(arguments["min_visibility"]),
        )

    def fill(self, view, record, stored):
        sample = KeypointSample(
            record["path"],
            np.asarray(record["keypoints"], np.float32).reshape(-1, 2),
            np.asarray(record["flags"], np.int64),
            None if record["box"] is None else tuple(record["box"]),
            int(record["image_id"]),
            None if record["size"] is None else tuple(record["size"]),
        )
        view.samples = [(sample.path, 0)]
        view.keypoint_samples = [sample]
        view.load_image = image_loader(stored, record["path"])
