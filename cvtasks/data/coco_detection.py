"""COCO JSON detection: every box of every image, the reader behind ``data=coco_detection``.

Files are loaded and checked by :func:`~cvtasks.data.coco_format.load_coco`; each ``bbox`` is
checked by :func:`~cvtasks.data.coco_boxes.coco_box` under the ``on_bad_annotation`` policy
(``"skip"`` drops the box, not the image). ``iscrowd`` annotations are kept as crowd boxes
(ignored by the loss and the metric); images without annotations are kept as negatives.
Category ids, whatever they are, become the contiguous labels ``0..C-1`` in id order.

Two layouts are read:

- COCO's own: ``data.root`` is the images folder and ``data.annotations`` one JSON file (val and
  test carved out of it) or ``{train: ..., val: ..., test: ...}``;
- the per-split export of labelling tools (Roboflow and others): ``data.root`` holds
  ``train/``, ``valid/`` (or ``val/``) and ``test/``, each with its images and its own
  ``_annotations.coco.json``. It is used when ``data.annotations`` is not given and
  ``root/train/_annotations.coco.json`` exists (or with ``layout=split_folders``).

``file_name`` is taken relative to ``data.root``, else to the folder of its JSON file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cvtasks.data.annotations import AnnotationError, AnnotationIssues
from cvtasks.data.coco_boxes import coco_box
from cvtasks.data.coco_format import (
    CocoFile,
    image_path,
    image_size,
    load_coco,
    missing_image_message,
)
from cvtasks.data.datamodule import check_choice
from cvtasks.data.detection import DetectionDataModule, DetectionSample, Splits
from cvtasks.data.images import BadImageError
from cvtasks.registry import DATASETS

EXPORT_FILE = "_annotations.coco.json"
"""The JSON each split folder of a labelling tool's export holds."""
EXPORT_SPLITS = {"train": ("train",), "val": ("valid", "val"), "test": ("test",)}
LAYOUTS = ("auto", "files", "split_folders")


def export_annotations(root: Path) -> dict[str, Path]:
    """The split files of a per-split export under ``root``: ``{"train": .../_annotations...}``."""
    found = {}
    for split, folders in EXPORT_SPLITS.items():
        for folder in folders:
            if (root / folder / EXPORT_FILE).is_file():
                found[split] = root / folder / EXPORT_FILE
                break
    return found


def category_labels(files: Mapping[str, CocoFile]) -> tuple[list[str], dict[int, int]]:
    """Class names and ``category id -> label`` (0..C-1 in id order), the same in every split.

    A category that only groups others (it is another's ``supercategory`` and no annotation of
    any split uses it, as in the exports of labelling tools) is no class and is left out.

    Raises:
        AnnotationError: the splits list different categories.
    """
    train = files["train"]
    expected = {i: str(c["name"]) for i, c in train.categories.items()}
    for coco in files.values():
        if {i: str(c["name"]) for i, c in coco.categories.items()} != expected:
            raise AnnotationError(
                f"{coco.path}: 'categories' differ from those of {train.path}; every split "
                "needs the same category ids and names"
            )
    used = {
        ann["category_id"]
        for coco in files.values()
        for anns in coco.annotations.values()
        for _, ann in anns
    }
    parents = {
        c.get("supercategory")
        for c in train.categories.values()
        if c.get("supercategory") != c["name"]
    }
    ids = [i for i in sorted(expected) if i in used or expected[i] not in parents]
    return [expected[i] for i in ids], {cat_id: k for k, cat_id in enumerate(ids)}


def coco_detection_samples(
    coco: CocoFile, images_root: Path, labels: Mapping[int, int], issues: AnnotationIssues
) -> list[DetectionSample]:
    """One :class:`DetectionSample` per image of ``coco`` with every usable box.

    Args:
        coco: the loaded file.
        images_root: the folder ``file_name`` is relative to (else the JSON's folder).
        labels: category id → label 0..C-1.
        issues: the bad-annotation policy; under ``"skip"`` a bad box is dropped, an image
            whose file is missing or unreadable is dropped.
    """
    samples = []
    for image in coco.images.values():
        if problem := missing_image_message(coco, image, images_root):
            issues.report(problem)
            continue
        path = image_path(coco, image, images_root)
        try:
            size = image_size(image, path)
        except BadImageError as err:
            issues.report(str(err))
            continue
        boxes, classes, crowd = [], [], []
        for position, ann in coco.annotations.get(image.id, []):
            try:
                box = coco_box(coco, position, ann, size)
            except AnnotationError as err:
                issues.report(str(err))
                continue
            boxes.append(box)
            classes.append(labels[ann["category_id"]])
            crowd.append(bool(ann.get("iscrowd")))
        source = coco.where("images", image.position)
        samples.append(
            DetectionSample(
                os.fspath(path), tuple(boxes), tuple(classes), tuple(crowd), size, source
            )
        )
    return samples


@DATASETS.register("coco_detection")
class CocoDetectionDataModule(DetectionDataModule):
    """Every box of every image from COCO JSON files (``data=coco_detection``).

    Args:
        root: the images folder (``file_name`` relative to it), or the folder of a per-split
            export (``train/ valid/ test/``, each with ``_annotations.coco.json``).
        annotations: one COCO file, or ``{"train": file, "val": file, "test": file}``; a
            relative path is relative to ``root``. ``None`` reads a per-split export.
        layout: ``"auto"`` (``annotations`` when given, else a per-split export), ``"files"``
            or ``"split_folders"``.
        **kwargs: :class:`~cvtasks.data.detection.DetectionDataModule` options. Splits without
            a file are carved out of train (``val_fraction``, ``test_fraction``, seeded).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        annotations: str | os.PathLike[str] | Mapping[str, str] | None = None,
        layout: str = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_choice("data.layout", layout, LAYOUTS)
        if root is None:
            raise ValueError(
                "data=coco_detection needs data.root=<images folder> and "
                "data.annotations=<file.json> (or {train: ..., val: ..., test: ...}), or "
                "data.root=<export folder> holding train/ valid/ test/ with "
                f"{EXPORT_FILE}"
            )
        self.root = Path(root).expanduser()
        if layout == "split_folders" and annotations is not None:
            raise ValueError(
                f"data.layout=split_folders reads root/<split>/{EXPORT_FILE}; remove "
                "data.annotations, or set data.layout=files to read it"
            )
        if layout == "split_folders" or (layout == "auto" and annotations is None):
            self.annotations = self._export_files(layout)
        else:
            self.annotations = self._given_files(annotations)

    def _export_files(self, layout: str) -> dict[str, Path]:
        found = export_annotations(self.root)
        if "train" not in found:
            because = "" if layout == "split_folders" else " and data.annotations is not set"
            raise FileNotFoundError(
                f"data.root: {self.root / 'train' / EXPORT_FILE} does not exist{because}; "
                "give data.annotations=<file.json>, or point data.root at a folder holding "
                f"train/ (valid/, test/) with {EXPORT_FILE}"
            )
        return found

    def _given_files(
        self, annotations: str | os.PathLike[str] | Mapping[str, str] | None
    ) -> dict[str, Path]:
        if annotations is None:
            raise ValueError("data.layout=files needs data.annotations=<file.json>")
        if isinstance(annotations, (str, os.PathLike)):
            annotations = {"train": annotations}
        unknown = set(annotations) - {"train", "val", "test"}
        if unknown or "train" not in annotations:
            raise ValueError(
                f"data.annotations must be a file or a mapping with train (and optional val, "
                f"test) files; got keys {sorted(annotations)}"
            )
        return {s: self.root / Path(p).expanduser() for s, p in annotations.items()}

    def read_splits(self) -> tuple[list[str], Splits]:
        """Load the COCO files and turn them into samples (see the module docstring)."""
        policy = self.on_bad_annotation
        issues = {split: AnnotationIssues(policy, unit="boxes") for split in self.annotations}
        files = {split: load_coco(path, issues[split]) for split, path in self.annotations.items()}
        names, labels = category_labels(files)
        splits = {
            split: coco_detection_samples(coco, self.root, labels, issues[split])
            for split, coco in files.items()
        }
        for split, found in issues.items():
            found.warn(self.annotations[split])
        self.skipped_annotations = {split: len(found.messages) for split, found in issues.items()}
        return names, self.carve(splits)
