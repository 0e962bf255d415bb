"""YOLO (Ultralytics) text labels (``data=yolo_detection``): every box of every image.

The files are read by :mod:`cvtasks.data.yolo_format`: ``<root>/data.yaml`` names the classes and
the ``train``/``val``/``test`` image folders (or ``.txt`` lists); each image's label file holds
one ``class x_center y_center width height`` line per object, normalized to the image size,
which is read from the image file's header. An empty or missing label file is a negative image;
a split in which no image has a label file at all is refused (the labels folder is missing or
misplaced). A split ``data.yaml`` does not give is carved out of train.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from cvtasks.data.annotations import AnnotationError, AnnotationIssues
from cvtasks.data.datamodule import check_choice
from cvtasks.data.detection import DetectionDataModule, DetectionSample, Splits
from cvtasks.data.images import file_problem, load_or_skip, read_image_size
from cvtasks.data.scan import FolderScan
from cvtasks.data.yolo_format import (
    YoloData,
    label_path,
    listed_images,
    load_data_yaml,
    parse_labels,
)
from cvtasks.registry import DATASETS

__all__ = ["YoloDetectionDataModule"]


class Labelled(NamedTuple):
    """A sample, and whether its label file exists (a missing one reads as no objects)."""

    sample: DetectionSample
    has_file: bool


@DATASETS.register("yolo_detection")
class YoloDetectionDataModule(DetectionDataModule):
    """Every box of a YOLO dataset (Ultralytics layout, see the module docstring).

    Args:
        root: the dataset folder, holding ``data_yaml``.
        data_yaml: the dataset file, relative to ``root`` (or absolute).
        follow_links: also follow symbolic links that leave the dataset folders.
        **kwargs: :class:`~cvtasks.data.detection.DetectionDataModule` options
            (``on_bad_annotation``: ``"skip"`` leaves out a bad label line, or the image when
            a listed image is missing).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        data_yaml: str = "data.yaml",
        follow_links: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if root is None:
            raise ValueError(
                "data=yolo_detection needs data.root=<dataset folder with data.yaml, images/ "
                "and labels/>"
            )
        check_choice("data.follow_links", follow_links, (False, True))
        self.root = Path(root).expanduser()
        self.data_yaml = self.root / Path(data_yaml).expanduser()
        self.follow_links = bool(follow_links)

    def read_splits(self) -> tuple[list[str], Splits]:
        """Read ``data.yaml``, list each split's images and parse their label files."""
        data = load_data_yaml(self.data_yaml, self.root)
        # links may not leave the dataset: the root and every folder data.yaml names
        places = [self.root, *(p for sources in data.splits.values() for p in sources)]
        scan_root = os.path.commonpath([os.path.realpath(p) for p in places])
        scan = FolderScan(scan_root, self.follow_links, self.on_bad_image)
        issues: dict[str, AnnotationIssues] = {}
        splits: Splits = {}
        read: dict[str, Labelled | None] = {}  # an image named by two splits is read once
        listed: dict[Path, list[str]] = {}  # a folder two splits name is listed once
        with scan.reporting():
            for split, sources in data.splits.items():
                issues[split] = found = AnnotationIssues(self.on_bad_annotation, unit="boxes")
                images = [i for src in sources for i in self._images(src, scan, found, listed)]
                for image, labels in images:
                    if image not in read:
                        read[image] = self._sample(image, labels, data, found)
                kept = [read[image] for image, _ in images]
                splits[split] = self._check_labels_found(split, [k for k in kept if k])
        for found in issues.values():
            found.warn(self.data_yaml)
        self.skipped_annotations = {split: len(found.messages) for split, found in issues.items()}
        return data.names, self.carve(splits)

    def _images(
        self,
        source: Path,
        scan: FolderScan,
        issues: AnnotationIssues,
        listed: dict[Path, list[str]],
    ) -> Iterator[tuple[str, Path]]:
        """``(image, label file)`` of one ``data.yaml`` entry: a folder (recursively) or a list.

        ``listed`` keeps each folder's listing: the scan would take a second listing of the
        same files for duplicates.
        """
        if source.is_dir():
            if label_path(source / "image.jpg") is None:
                raise AnnotationError(
                    f"{self.data_yaml}: {source} has no folder called 'images' on its path; "
                    "YOLO label files are found by replacing it with 'labels' "
                    "(images/train/a.jpg -> labels/train/a.txt)"
                )
            if source not in listed:
                listed[source] = scan.files(source, group=os.fspath(source))
            for image in listed[source]:
                # never the empty Path: the image lies under source, whose path holds images/
                yield image, label_path(image) or Path()
            return
        for image, where in listed_images(source):
            labels = label_path(image)
            if problem := file_problem(image):
                issues.report(f"{where}: image {os.fspath(image)!r} {problem}")
            elif labels is None:
                issues.report(
                    f"{where}: {os.fspath(image)!r} has no folder called 'images' on its path, "
                    "so its label file cannot be found"
                )
            else:
                yield os.fspath(image), labels

    def _sample(
        self, image: str, labels: Path, data: YoloData, issues: AnnotationIssues
    ) -> Labelled | None:
        """The image's sample and whether its label file exists, or ``None`` when its header
        cannot be read under ``on_bad_image=skip``."""
        size = load_or_skip(lambda _: read_image_size(image), 0, self.on_bad_image)
        if size is None:
            return None
        objects = parse_labels(labels, size, len(data.names), issues)
        sample = DetectionSample(
            path=image,
            boxes=tuple(box for _, box in objects or ()),
            labels=tuple(label for label, _ in objects or ()),
            crowd=(False,) * len(objects or ()),
            size=size,
            source=os.fspath(labels),
        )
        return Labelled(sample, objects is not None)

    def _check_labels_found(self, split: str, found: list[Labelled]) -> list[DetectionSample]:
        """The samples; a split with images but not one label file points at the wrong
        labels folder, and is refused."""
        if found and not any(f.has_file for f in found):
            first = found[0].sample
            raise FileNotFoundError(
                f"{self.data_yaml}: {split}: none of its {len(found)} images has a label file "
                f"(e.g. {first.source} for {first.path}); YOLO labels sit beside images/ in "
                "labels/, one .txt per image"
            )
        return [f.sample for f in found]
