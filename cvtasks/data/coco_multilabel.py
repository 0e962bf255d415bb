"""Multi-label images from a COCO JSON file: the categories of each image's annotations.

``data=coco_multilabel data.root=IMAGES data.annotations=FILE.json``. Each image's label set is
the names of the categories its annotations name (boxes, masks or keypoints alike: only
``category_id`` is read); an image without annotations holds none of the classes. The classes
are the file's categories in id order, annotated or not. Splits are carved out of the file's
images (seeded, as ``image_folder`` carves); separate split files are read by naming each in
``data.val_annotations`` / ``data.test_annotations``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cvtasks.data.annotations import AnnotationIssues
from cvtasks.data.coco_format import CocoFile, image_path, load_coco, missing_image_message
from cvtasks.data.multilabel import LabelledImage, MultilabelDataModule
from cvtasks.registry import DATASETS


def coco_label_sets(
    coco: CocoFile, images_root: str | os.PathLike[str], split: str | None, issues: AnnotationIssues
) -> list[LabelledImage]:
    """One row per image of ``coco``: its file and the names of its annotations' categories.

    An image whose file is missing goes to ``issues`` (an error naming the entry and the places
    looked in, or skipped under ``data.on_bad_annotation=skip``).
    """
    rows = []
    for image in coco.images.values():
        problem = missing_image_message(coco, image, images_root)
        if problem is not None:
            issues.report(problem)
            continue
        names = {
            coco.categories[a["category_id"]]["name"] for _, a in coco.annotations.get(image.id, [])
        }
        rows.append(
            LabelledImage(os.fspath(image_path(coco, image, images_root)), frozenset(names), split)
        )
    return rows


@DATASETS.register("coco_multilabel")
class CocoMultilabelDataModule(MultilabelDataModule):
    """Label sets from COCO annotations (see the module docstring).

    Args:
        root: the images folder ``file_name`` is relative to (else beside the JSON file).
        annotations: the COCO file of the training images (of every image when no split file
            is given).
        val_annotations: a COCO file of validation images (same categories), or ``None``.
        test_annotations: a COCO file of test images, or ``None``.
        on_bad_annotation: ``error`` or ``skip`` (images whose file is missing, annotations
            naming no image or category).
        **kwargs: :class:`~cvtasks.data.multilabel.MultilabelDataModule` options.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        annotations: str | os.PathLike[str],
        val_annotations: str | os.PathLike[str] | None = None,
        test_annotations: str | os.PathLike[str] | None = None,
        on_bad_annotation: str = "error",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.files = {"train": annotations, "val": val_annotations, "test": test_annotations}
        self.on_bad_annotation = on_bad_annotation
        AnnotationIssues(on_bad_annotation)  # checks the policy now, not at the first bad entry
        self._categories: list[str] | None = None

    def read_rows(self) -> list[LabelledImage]:
        """The rows of every given file; the training file's categories are the classes."""
        issues = AnnotationIssues(self.on_bad_annotation)
        rows: list[LabelledImage] = []
        for split, path in self.files.items():
            if path is None:
                continue
            coco = load_coco(path, issues)
            names = [coco.categories[i]["name"] for i in sorted(coco.categories)]
            if self._categories is None:
                self._categories = names
            elif names != self._categories:
                raise ValueError(
                    f"data.{split}_annotations: {path} has categories {names}, the training "
                    f"file {self.files['train']} {self._categories}; split files must share them"
                )
            # rows of the training file carry no split: val/test are carved from them when
            # no file of their own is given
            rows.extend(
                coco_label_sets(coco, self.root, None if split == "train" else split, issues)
            )
        issues.warn(self.files["train"])
        return rows

    def declared_class_names(self) -> list[str] | None:
        """The training file's category names in id order."""
        return self._categories

    def source_name(self) -> str:
        """The training file."""
        return str(self.files["train"])
