"""Pascal VOC XML boxes (``data=voc_boxes``): one single-object sample per annotation file.

The files and their layout are read by :mod:`cvtasks.data.voc_format`: ``<root>/Annotations/``
and ``<root>/JPEGImages/`` (or the folders ``annotations_dir`` and ``images_dir`` name), split
lists in ``<root>/ImageSets/Main``. Splits come from the lists named by ``splits`` (default
``train``, ``val``, ``test``); a missing list is carved out of train, and without a train list
every ``.xml`` file is train. An image keeps its largest object (``multiple_objects=largest``)
or is reported (``error``); one without objects is *nothing*.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from cvtasks.data.annotations import ON_BAD_ANNOTATION, AnnotationIssues
from cvtasks.data.boxes import BoxDataModule, BoxSample, Splits, pick_box
from cvtasks.data.datamodule import check_choice
from cvtasks.data.voc_format import VocFile, VocFolder, class_names, parse_voc
from cvtasks.registry import DATASETS

__all__ = ["VocBoxesDataModule", "parse_voc"]


@DATASETS.register("voc_boxes")
class VocBoxesDataModule(BoxDataModule):
    """Single-object boxes from Pascal VOC XML files.

    Args:
        root: the VOC folder (``VOCdevkit/VOC2007``).
        splits: split → ``ImageSets/Main`` list name, e.g. ``{train: trainval, test: test}``.
        classes: the object classes in label order; ``None`` takes the sorted names found in
            the files. An object of a class not listed is a bad annotation.
        on_bad_annotation: ``"error"`` or ``"skip"`` (count and drop the image).
        annotations_dir: folder of the XML files under ``root``; ``None``: ``Annotations``.
        images_dir: folder of the images under ``root``; ``None``: ``JPEGImages``.
        **kwargs: :class:`~cvtasks.data.boxes.BoxDataModule` options.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        splits: Mapping[str, str] | None = None,
        classes: Sequence[str] | None = None,
        on_bad_annotation: str = "error",
        annotations_dir: str | None = None,
        images_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if root is None:
            raise ValueError("data=voc_boxes needs data.root=<VOC folder with Annotations/>")
        check_choice("data.on_bad_annotation", on_bad_annotation, ON_BAD_ANNOTATION)
        self.folder = VocFolder(root, splits, annotations_dir, images_dir)
        self.classes = list(classes) if classes else None
        self.on_bad_annotation = on_bad_annotation
        #: how many bad annotations ``on_bad_annotation=skip`` dropped.
        self.skipped_annotations = 0

    def read_splits(self) -> tuple[list[str], Splits]:
        """Parse every listed file, then label and check them (see the class docstring)."""
        issues = AnnotationIssues(self.on_bad_annotation)
        parsed = self.folder.parse(issues)
        names = class_names(parsed, self.classes)
        labels = {name: k + 1 for k, name in enumerate(names)}
        splits: Splits = {}
        for split, files in parsed.items():
            splits[split] = []
            for xml_path, voc in files:
                sample = self._sample(xml_path, voc, labels, issues)
                if sample is not None:
                    splits[split].append(sample)
        issues.warn(self.folder.annotations_dir)
        self.skipped_annotations = len(issues.messages)
        return names, self.carve(splits)

    def _sample(
        self,
        xml_path: str,
        voc: VocFile,
        labels: Mapping[str, int],
        issues: AnnotationIssues,
    ) -> BoxSample | None:
        image = self.folder.image(xml_path, voc.filename, issues)
        if image is None:
            return None
        unknown = [o.name for o in voc.objects if o.name not in labels]
        if unknown:
            issues.report(
                f"{xml_path}: object.name: {unknown[0]!r} is not in data.classes {list(labels)}"
            )
            return None
        objects = [(labels[o.name], o.box) for o in voc.objects]
        picked = pick_box(objects, self.multiple_objects)
        if picked is None:
            issues.report(
                f"{xml_path}: {len(objects)} objects but data.multiple_objects=error allows one "
                "(data.multiple_objects=largest keeps the largest)"
            )
            return None
        return BoxSample(image, picked[0], picked[1], voc.size, xml_path)
