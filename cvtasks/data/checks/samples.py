"""Each split's samples read one by one through the training datasets' own loaders.

:func:`inspect_split` takes a split's dataset as the data module built it (the very object
training iterates) and reads every image with that dataset's loader, so an image fails here
exactly when it would fail in training, with the same reason. Per image it notes the size, what
it counts towards (classes, boxes, labelled points, mask pixels, identities) and the faults of
its annotation that the reader left to the checker.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from cvtasks.data.boxes import BoxDataset
from cvtasks.data.checks.faults import Fault, keypoint_faults
from cvtasks.data.detection import DetectionDataset
from cvtasks.data.identity_folders import IdentityImageDataset, PairDataset
from cvtasks.data.image_folder import ImageFolderDataset
from cvtasks.data.images import BadImageError
from cvtasks.data.keypoint_dataset import KeypointDataset
from cvtasks.data.mask_dataset import ImageMaskDataset
from cvtasks.data.masks import BadMaskError
from cvtasks.data.multilabel import MultilabelDataset
from cvtasks.data.shards import ShardSplit
from cvtasks.ops.masks import IGNORE_INDEX

#: the unit of identity splits: their counts are keyed by identity
IDENTITY_UNIT = "images per identity"


@dataclass
class ImageRecord:
    """What reading one sample's image (and annotation) showed.

    Attributes:
        path: the image file.
        size: ``(height, width)`` as read, ``None`` when it could not be read.
        counts: what the image counts towards, by class (or point, or identity) name.
        faults: what is wrong with it.
        digest: the hash of the image's bytes when they were not read from ``path`` (shards);
            ``None``: hash the file.
    """

    path: str
    size: tuple[int, int] | None = None
    counts: Counter[str] = field(default_factory=Counter)
    faults: list[Fault] = field(default_factory=list)
    digest: str | None = None


@dataclass
class SplitSamples:
    """A split's records and what its counts count.

    Attributes:
        unit: ``images``, ``boxes``, ``labels``, ``labelled points``, ``pixels`` or
            ``images per identity`` (counts keyed by identity).
        records: one per distinct image of the split.
    """

    unit: str
    records: list[ImageRecord]
    note: str | None = None


def _read(record: ImageRecord, load: Callable[[], np.ndarray]) -> np.ndarray | None:
    """``load()``, noting the size, or an ``unreadable`` fault with the loader's reason."""
    try:
        image = load()
    except BadImageError as err:
        record.faults.append(Fault("unreadable", record.path, err.reason or str(err)))
        return None
    record.size = (int(image.shape[0]), int(image.shape[1]))
    return image


def _each(
    items: Iterable[tuple[str, Iterable[str]]], load: Callable[[int], np.ndarray]
) -> list[ImageRecord]:
    """A record per ``(path, counted names)`` of a split, its image read by ``load(index)``."""
    records = []
    for index, (path, counted) in enumerate(items):
        record = ImageRecord(path, counts=Counter(counted))
        _read(record, lambda index=index: load(index))
        records.append(record)
    return records


def _class_images(dataset: ImageFolderDataset, names: Sequence[str]) -> SplitSamples:
    items = ((path, [names[label]]) for path, label in dataset.samples)
    return SplitSamples("images", _each(items, dataset.load_image))


def _multilabel(dataset: MultilabelDataset, names: Sequence[str]) -> SplitSamples:
    targets = dataset.targets.numpy() > 0
    items = (
        (path, [names[k] for k in np.flatnonzero(targets[i])])
        for i, (path, _) in enumerate(dataset.samples)
    )
    return SplitSamples("labels", _each(items, dataset.load_image))


def _identities(dataset: IdentityImageDataset, names: Sequence[str]) -> SplitSamples:
    items = ((path, [names[label]]) for path, label in dataset.samples)
    return SplitSamples(IDENTITY_UNIT, _each(items, dataset.load_image))


def _pairs(dataset: PairDataset) -> SplitSamples:
    """The distinct images of evaluation pairs; an identity is its image's folder name."""
    images = dataset.images
    items = ((path, [Path(path).parent.name]) for path, _ in images.samples)
    return SplitSamples(IDENTITY_UNIT, _each(items, images.load_image))


def _detection(dataset: DetectionDataset, names: Sequence[str]) -> SplitSamples:
    items = ((s.path, [names[k] for k in s.labels]) for s in dataset.samples)
    return SplitSamples("boxes", _each(items, dataset.load_image))


def _single_box(dataset: BoxDataset, names: Sequence[str]) -> SplitSamples:
    items = ((s.path, ["nothing" if s.label == 0 else names[s.label - 1]]) for s in dataset.samples)
    return SplitSamples("images", _each(items, dataset.load_image))


def _keypoints(dataset: KeypointDataset, point_names: Sequence[str]) -> SplitSamples:
    """Objects grouped by image (an image is read once), their points checked against it."""
    by_path: dict[str, list[int]] = {}
    for index, sample in enumerate(dataset.keypoint_samples):
        by_path.setdefault(sample.path, []).append(index)
    records = []
    for path, indices in by_path.items():
        record = ImageRecord(path)
        image = _read(record, lambda index=indices[0]: dataset.load_image(index))
        for index in indices:
            sample = dataset.keypoint_samples[index]
            labelled = np.flatnonzero(sample.flags > 0)
            record.counts.update(point_names[k] for k in labelled if k < len(point_names))
            if image is not None:
                where = f"{path} (image_id {sample.image_id})"
                found = keypoint_faults(
                    where, sample.keypoints, sample.flags, image.shape[:2], point_names
                )
                record.faults.extend(found)
        records.append(record)
    return SplitSamples("labelled points", records)


def _masks(dataset: ImageMaskDataset, names: Sequence[str]) -> SplitSamples:
    records = []
    for index, (path, mask_path) in enumerate(dataset.pairs):
        record = ImageRecord(path)
        try:
            image, mask = dataset.load(index)
        except BadMaskError as err:
            record.faults.append(Fault("mask", err.path or mask_path or path, str(err)))
        except BadImageError as err:
            record.faults.append(Fault("unreadable", path, err.reason or str(err)))
        else:
            record.size = (int(image.shape[0]), int(image.shape[1]))
            values, pixels = np.unique(mask, return_counts=True)
            for value, count in zip(values.tolist(), pixels.tolist()):
                name = "ignore" if value == IGNORE_INDEX else names[value]
                record.counts[name] += int(count)
        records.append(record)
    return SplitSamples("pixels", records)


def _generic(dataset: Any) -> SplitSamples:
    """A dataset of another kind (a plugin's): its images only, when it lists them."""
    samples = getattr(dataset, "samples", None)
    load = getattr(dataset, "load_image", None)
    if samples is None or load is None:
        kind = type(dataset).__name__
        return SplitSamples("images", [], f"not read: a {kind} lists no image files to check")
    items = ((str(s[0] if isinstance(s, tuple) else getattr(s, "path", s)), []) for s in samples)
    return SplitSamples("images", _each(items, load))


def _shards(split: ShardSplit, datamodule: Any) -> SplitSamples:
    """Each shard sample through a one-sample dataset of the reader's class, as training decodes
    it; an image in several samples (objects of one image, pairs) is one record."""
    by_path: dict[str, ImageRecord] = {}
    unit, note = "images", None
    for index in range(len(split)):
        stored = split.stored(index)
        found = inspect_split(split.decoder.filled(stored), datamodule)
        unit, note = found.unit, found.note
        hashes = {key: stored_hash(stored[key]) for key in ("image", "image_b") if key in stored}
        for record, key in zip(found.records, hashes):
            record.digest = hashes[key]
            seen = by_path.setdefault(record.path, record)
            if seen is not record and unit != IDENTITY_UNIT:  # pairs repeat images; objects add
                seen.counts.update(record.counts)
                seen.faults.extend(record.faults)
    return SplitSamples(unit, list(by_path.values()), note)


def stored_hash(data: Any) -> str:
    """BLAKE2b (hex) of stored bytes, as :func:`~cvtasks.data.checks.report.file_hash` hashes
    files."""
    return hashlib.blake2b(bytes(data), digest_size=20).hexdigest()


def inspect_split(dataset: Dataset, datamodule: Any) -> SplitSamples:
    """Read every image of a split's dataset with its own loader and note what it holds.

    Args:
        dataset: the split's dataset, as the data module built it.
        datamodule: the data module, for its class (or point) names.

    Returns:
        One record per distinct image, and what the counts count.
    """
    names = list(getattr(datamodule, "class_names", []))
    if isinstance(dataset, ShardSplit):
        return _shards(dataset, datamodule)
    if isinstance(dataset, KeypointDataset):
        return _keypoints(dataset, list(datamodule.keypoint_names))
    if isinstance(dataset, MultilabelDataset):
        return _multilabel(dataset, names)
    if isinstance(dataset, IdentityImageDataset):
        return _identities(dataset, names)
    if isinstance(dataset, PairDataset):
        return _pairs(dataset)
    if isinstance(dataset, ImageFolderDataset):
        return _class_images(dataset, names)
    if isinstance(dataset, DetectionDataset):
        return _detection(dataset, names)
    if isinstance(dataset, BoxDataset):
        return _single_box(dataset, names)
    if isinstance(dataset, ImageMaskDataset):
        return _masks(dataset, names)
    return _generic(dataset)


def split_datasets(datamodule: Any) -> Iterator[tuple[str, Dataset]]:
    """``(split, dataset)`` of train, val and test, those the data module has."""
    for split in ("train", "val", "test"):
        dataset = getattr(datamodule, f"{split}_dataset", None)
        if dataset is not None:
            yield split, dataset
