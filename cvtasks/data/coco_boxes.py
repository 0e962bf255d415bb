"""COCO JSON boxes: the single-object reader behind ``data=coco_boxes``.

Files are loaded and checked by :func:`~cvtasks.data.coco_format.load_coco`; this module checks
each annotation's ``bbox`` under the ``on_bad_annotation`` policy (``"error"`` raises
:class:`~cvtasks.data.annotations.AnnotationError` naming the file and the field, ``"skip"``
drops the image, counts it and warns once per file).

:class:`CocoBoxesDataModule` (``data=coco_boxes``) turns each image into one single-object sample:
its box (the largest, or an error, when there are several) or *nothing* when it has none.
Annotations marked ``iscrowd`` are groups, not objects, and are ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cvtasks.data.annotations import ON_BAD_ANNOTATION, AnnotationError, AnnotationIssues
from cvtasks.data.boxes import MULTIPLE_OBJECTS, BoxDataModule, BoxSample, Splits, pick_box
from cvtasks.data.coco_format import (
    CocoFile,
    image_path,
    image_size,
    load_coco,
    missing_image_message,
)
from cvtasks.data.datamodule import check_choice
from cvtasks.data.images import BadImageError
from cvtasks.registry import DATASETS


def coco_box(
    coco: CocoFile,
    position: int,
    ann: dict[str, Any],
    size: tuple[int, int],
    tolerance: float = 1.0,
) -> tuple[float, float, float, float]:
    """The ``bbox`` ``[x, y, w, h]`` of an annotation as ``xyxy`` pixels, checked.

    The box must have a positive size and lie inside the image; up to ``tolerance`` pixels past
    an edge (rounding in exported files) are clipped.

    Args:
        coco: the file, for messages.
        position: the annotation's index in ``annotations``.
        ann: the annotation.
        size: ``(height, width)`` of its image.
        tolerance: pixels a box may pass an edge by.

    Raises:
        AnnotationError: naming the file, ``annotations[i].bbox`` and what is wrong.
    """
    where = coco.where("annotations", position, "bbox")
    bbox = ann.get("bbox")
    if not (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
    ):
        raise AnnotationError(f"{where}: {bbox!r} is not [x, y, width, height]")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise AnnotationError(f"{where}: {bbox!r} has a width or height <= 0")
    height, width = size
    x1, y1 = x + w, y + h
    if x < -tolerance or y < -tolerance or x1 > width + tolerance or y1 > height + tolerance:
        raise AnnotationError(
            f"{where}: {bbox!r} lies outside its {width}x{height} image "
            f"(image_id {ann['image_id']})"
        )
    return (max(0.0, x), max(0.0, y), min(float(width), x1), min(float(height), y1))


def coco_box_samples(
    coco: CocoFile,
    images_root: str | os.PathLike[str],
    labels: Mapping[int, int],
    issues: AnnotationIssues,
    multiple_objects: str = "largest",
) -> list[BoxSample]:
    """One :class:`BoxSample` per image of ``coco``: its box and label, or *nothing*.

    Args:
        coco: the loaded file.
        images_root: the folder ``file_name`` is relative to (else the JSON file's folder).
        labels: category id → task label (1..C).
        issues: the bad-annotation policy; an image with a bad box or a missing file is dropped
            under ``"skip"``.
        multiple_objects: ``"largest"`` keeps the largest box, ``"error"`` reports the image.
    """
    check_choice("data.multiple_objects", multiple_objects, MULTIPLE_OBJECTS)
    root = Path(images_root).expanduser()
    samples = []
    for image in coco.images.values():
        if problem := missing_image_message(coco, image, root):
            issues.report(problem)
            continue
        path = image_path(coco, image, root)
        try:
            size = image_size(image, path)
            objects = [
                (labels[ann["category_id"]], coco_box(coco, i, ann, size))
                for i, ann in coco.annotations.get(image.id, [])
                if not ann.get("iscrowd")
            ]
        except (AnnotationError, BadImageError) as err:
            issues.report(str(err))
            continue
        picked = pick_box(objects, multiple_objects)
        if picked is None:
            issues.report(
                f"{coco.where('images', image.position)}: {image.file_name!r} has "
                f"{len(objects)} objects but data.multiple_objects=error allows one "
                "(data.multiple_objects=largest keeps the largest)"
            )
            continue
        source = coco.where("images", image.position)
        samples.append(BoxSample(os.fspath(path), picked[0], picked[1], size, source))
    return samples


@DATASETS.register("coco_boxes")
class CocoBoxesDataModule(BoxDataModule):
    """Single-object boxes from COCO JSON files (``data=coco_boxes``).

    Args:
        root: the images folder; each ``file_name`` is relative to it, or, when not found
            there, to the folder of its JSON file (the layout labelling tools export).
        annotations: one COCO file, or ``{"train": file, "val": file, "test": file}``; a
            relative path is taken relative to ``root``. Splits without a file are carved out
            of train (``val_fraction``, ``test_fraction``, stratified by label and seeded).
        on_bad_annotation: ``"error"`` or ``"skip"`` (count and drop the image).
        **kwargs: :class:`~cvtasks.data.boxes.BoxDataModule` options.

    Class labels follow the train file's categories sorted by id: label 1 is the smallest id.
    Val and test files must list the same categories.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        annotations: str | os.PathLike[str] | Mapping[str, str] | None = None,
        on_bad_annotation: str = "error",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if root is None or annotations is None:
            raise ValueError(
                "data=coco_boxes needs data.root=<images folder> and "
                "data.annotations=<file.json> (or {train: ..., val: ..., test: ...})"
            )
        check_choice("data.on_bad_annotation", on_bad_annotation, ON_BAD_ANNOTATION)
        self.root = Path(root).expanduser()
        if isinstance(annotations, (str, os.PathLike)):
            annotations = {"train": annotations}
        unknown = set(annotations) - {"train", "val", "test"}
        if unknown or "train" not in annotations:
            raise ValueError(
                f"data.annotations must be a file or a mapping with train (and optional val, "
                f"test) files; got keys {sorted(annotations)}"
            )
        self.annotations = {s: self.root / Path(p).expanduser() for s, p in annotations.items()}
        self.on_bad_annotation = on_bad_annotation
        #: per split, how many bad annotations ``on_bad_annotation=skip`` dropped.
        self.skipped_annotations: dict[str, int] = {}

    def read_splits(self) -> tuple[list[str], Splits]:
        """Load the COCO files and turn them into samples (see the class docstring)."""
        files: dict[str, CocoFile] = {}
        issues: dict[str, AnnotationIssues] = {}
        for split, path in self.annotations.items():
            issues[split] = AnnotationIssues(self.on_bad_annotation)
            files[split] = load_coco(path, issues[split])
        train = files["train"]
        ids = sorted(train.categories)
        names = [str(train.categories[i]["name"]) for i in ids]
        for coco in files.values():
            theirs = {i: str(c["name"]) for i, c in coco.categories.items()}
            if theirs != dict(zip(ids, names)):
                raise AnnotationError(
                    f"{coco.path}: 'categories' differ from those of {train.path}; every split "
                    "needs the same category ids and names"
                )
        labels = {cat_id: k + 1 for k, cat_id in enumerate(ids)}
        splits = {
            split: coco_box_samples(coco, self.root, labels, issues[split], self.multiple_objects)
            for split, coco in files.items()
        }
        for split, found in issues.items():
            found.warn(self.annotations[split])
        self.skipped_annotations = {split: len(found.messages) for split, found in issues.items()}
        return names, self.carve(splits)
