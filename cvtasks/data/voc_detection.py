"""Pascal VOC XML detection (``data=voc_detection``): every object of every annotation file.

The files and their layout are read by :mod:`cvtasks.data.voc_format`, as for ``voc_boxes``:
``<root>/Annotations/`` and ``<root>/JPEGImages/`` (or the folders ``annotations_dir`` and
``images_dir`` name), split lists in ``<root>/ImageSets/Main`` (a missing list is carved out of
train; without a train list every ``.xml`` file is train). An object marked ``<difficult>1`` is
kept as a crowd box: VOC's evaluation counts it neither as a hit nor as a miss, and neither do
the loss and metric here. A file without objects is a negative image.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from cvtasks.data.annotations import AnnotationIssues
from cvtasks.data.detection import DetectionDataModule, DetectionSample, Splits
from cvtasks.data.voc_format import VocFile, VocFolder, class_names
from cvtasks.registry import DATASETS

__all__ = ["VocDetectionDataModule"]


@DATASETS.register("voc_detection")
class VocDetectionDataModule(DetectionDataModule):
    """Every box of Pascal VOC XML files, with its class and ``difficult`` flag.

    Args:
        root: the VOC folder (``VOCdevkit/VOC2007``).
        splits: split → ``ImageSets/Main`` list name, e.g. ``{train: trainval, test: test}``.
        classes: the object classes in label order (label ``k`` is ``classes[k]``); ``None``
            takes the sorted names found in the files. An object of a class not listed is a
            bad annotation.
        annotations_dir: folder of the XML files under ``root``; ``None``: ``Annotations``.
        images_dir: folder of the images under ``root``; ``None``: ``JPEGImages``.
        **kwargs: :class:`~cvtasks.data.detection.DetectionDataModule` options
            (``on_bad_annotation``: ``"skip"`` leaves out a bad object, or the image when its
            file cannot be read or its image is missing).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        splits: Mapping[str, str] | None = None,
        classes: Sequence[str] | None = None,
        annotations_dir: str | None = None,
        images_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if root is None:
            raise ValueError(
                "data=voc_detection needs data.root=<VOC folder with Annotations/ and JPEGImages/>"
            )
        self.folder = VocFolder(root, splits, annotations_dir, images_dir)
        self.classes = list(classes) if classes else None

    def read_splits(self) -> tuple[list[str], Splits]:
        """Parse every listed file, then label and check its objects (see the class docstring)."""
        issues: dict[str, AnnotationIssues] = {}
        parsed: dict[str, list[tuple[str, VocFile]]] = {}
        for split, ids in self.folder.ids().items():
            issues[split] = AnnotationIssues(self.on_bad_annotation, unit="boxes")
            parsed[split] = self.folder.parse_split(ids, issues[split], skip_objects=True)
        names = class_names(parsed, self.classes)
        labels = {name: k for k, name in enumerate(names)}
        splits: Splits = {}
        for split, files in parsed.items():
            samples = (self._sample(xml, voc, labels, issues[split]) for xml, voc in files)
            splits[split] = [s for s in samples if s is not None]
        for found in issues.values():
            found.warn(self.folder.annotations_dir)
        self.skipped_annotations = {split: len(found.messages) for split, found in issues.items()}
        return names, self.carve(splits)

    def _sample(
        self, xml_path: str, voc: VocFile, labels: Mapping[str, int], issues: AnnotationIssues
    ) -> DetectionSample | None:
        image = self.folder.image(xml_path, voc.filename, issues)
        if image is None:
            return None
        objects = []
        for obj in voc.objects:
            if obj.name in labels:
                objects.append(obj)
            else:
                issues.report(
                    f"{xml_path}: object.name: {obj.name!r} is not in data.classes {list(labels)}"
                )
        return DetectionSample(
            path=image,
            boxes=tuple(o.box for o in objects),
            labels=tuple(labels[o.name] for o in objects),
            crowd=tuple(o.difficult for o in objects),
            size=voc.size,
            source=xml_path,
        )
