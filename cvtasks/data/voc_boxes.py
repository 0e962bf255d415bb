"""Pascal VOC XML boxes (``data=voc_boxes``): one single-object sample per annotation file.

The VOC layout::

    <root>/Annotations/<id>.xml       <annotation> with <filename>, <size>, <object>s
    <root>/JPEGImages/<filename>
    <root>/ImageSets/Main/<split>.txt  ids, one per line (optional)

Splits come from the ``ImageSets/Main`` lists named by ``splits`` (default ``train``, ``val``,
``test``); a missing list is carved out of train, and without a train list every ``.xml`` file
is train. VOC pixel indices start at 1 and include both ends, so ``<xmin>..<xmax>`` becomes the
continuous ``[xmin - 1, xmax]``. An image keeps its largest object (``multiple_objects=largest``)
or is reported (``error``); one without objects is *nothing*.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cvtasks.data.annotations import ON_BAD_ANNOTATION, AnnotationError, AnnotationIssues
from cvtasks.data.boxes import Box, BoxDataModule, BoxSample, Splits, pick_box
from cvtasks.data.datamodule import check_choice
from cvtasks.data.images import file_problem
from cvtasks.registry import DATASETS

TOLERANCE = 1.0  # pixels a box may pass an edge by (rounding in exported files); clipped

VocFile = tuple[str, tuple[int, int], list[tuple[str, Box]]]
"""``(filename, (height, width), [(class name, xyxy box), ...])`` of one XML file."""


def _text(node: ET.Element, path: str, where: str) -> str:
    child = node.find(path)
    if child is None or child.text is None or not child.text.strip():
        raise AnnotationError(f"{where}.{path.replace('/', '.')}: missing")
    return child.text.strip()


def _number(node: ET.Element, path: str, where: str) -> float:
    text = _text(node, path, where)
    try:
        return float(text)
    except ValueError:
        raise AnnotationError(
            f"{where}.{path.replace('/', '.')}: {text!r} is not a number"
        ) from None


def parse_voc(xml_path: str | os.PathLike[str]) -> VocFile:
    """Read one VOC annotation file.

    Returns:
        ``(filename, (height, width), [(class name, xyxy box), ...])``.

    Raises:
        AnnotationError: naming the file and the field (``object[1].bndbox.xmax``): unreadable
            XML, a missing field, a box with no area or outside the image.
    """
    where = os.fspath(xml_path)
    if problem := file_problem(xml_path):  # a FIFO would block the parser forever
        raise AnnotationError(f"{where}: {problem}")
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as err:
        raise AnnotationError(f"{where}: not a readable VOC XML file: {err}") from err
    filename = _text(root, "filename", where)
    width, height = _number(root, "size/width", where), _number(root, "size/height", where)
    if width < 1 or height < 1 or not width.is_integer() or not height.is_integer():
        raise AnnotationError(f"{where}.size: {width:g}x{height:g} is not a positive pixel size")
    objects = []
    for k, obj in enumerate(root.findall("object")):
        at = f"{where}: object[{k}]"
        name = _text(obj, "name", at)
        x0, y0, x1, y1 = (_number(obj, f"bndbox/{c}", at) for c in ("xmin", "ymin", "xmax", "ymax"))
        x0, y0 = x0 - 1, y0 - 1  # 1-based inclusive pixel indices → continuous edges
        if x1 <= x0 or y1 <= y0:
            raise AnnotationError(
                f"{at}.bndbox: ({x0 + 1:g}, {y0 + 1:g}, {x1:g}, {y1:g}) has no area"
            )
        if x0 < -TOLERANCE or y0 < -TOLERANCE or x1 > width + TOLERANCE or y1 > height + TOLERANCE:
            raise AnnotationError(
                f"{at}.bndbox: ({x0 + 1:g}, {y0 + 1:g}, {x1:g}, {y1:g}) lies outside the "
                f"{width:g}x{height:g} image"
            )
        box = (max(0.0, x0), max(0.0, y0), min(width, x1), min(height, y1))
        objects.append((name, box))
    return filename, (int(height), int(width)), objects


@DATASETS.register("voc_boxes")
class VocBoxesDataModule(BoxDataModule):
    """Single-object boxes from Pascal VOC XML files.

    Args:
        root: the VOC folder (``VOCdevkit/VOC2007``).
        splits: split → ``ImageSets/Main`` list name, e.g. ``{train: trainval, test: test}``.
        classes: the object classes in label order; ``None`` takes the sorted names found in
            the files. An object of a class not listed is a bad annotation.
        on_bad_annotation: ``"error"`` or ``"skip"`` (count and drop the image).
        annotations_dir: folder of the XML files under ``root``.
        images_dir: folder of the images under ``root``.
        **kwargs: :class:`~cvtasks.data.boxes.BoxDataModule` options.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        splits: Mapping[str, str] | None = None,
        classes: Sequence[str] | None = None,
        on_bad_annotation: str = "error",
        annotations_dir: str = "Annotations",
        images_dir: str = "JPEGImages",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if root is None:
            raise ValueError("data=voc_boxes needs data.root=<VOC folder with Annotations/>")
        check_choice("data.on_bad_annotation", on_bad_annotation, ON_BAD_ANNOTATION)
        self.root = Path(root).expanduser()
        self.split_lists = dict(splits or {"train": "train", "val": "val", "test": "test"})
        unknown = set(self.split_lists) - {"train", "val", "test"}
        if unknown:
            raise ValueError(f"data.splits keys must be train, val, test; got {sorted(unknown)}")
        self.classes = list(classes) if classes else None
        self.on_bad_annotation = on_bad_annotation
        self.annotations_dir = self.root / annotations_dir
        self.images_dir = self.root / images_dir
        #: how many bad annotations ``on_bad_annotation=skip`` dropped.
        self.skipped_annotations = 0

    def _ids(self) -> dict[str, list[str]]:
        if not self.annotations_dir.is_dir():
            raise FileNotFoundError(
                f"data.root: {self.annotations_dir} does not exist; expected the VOC layout "
                "<root>/Annotations/*.xml, <root>/JPEGImages/"
            )
        ids = {}
        for split, name in self.split_lists.items():
            listing = self.root / "ImageSets" / "Main" / f"{name}.txt"
            if listing.is_file():
                lines = listing.read_text(encoding="utf-8").split("\n")
                ids[split] = [line.split()[0] for line in lines if line.strip()]
        if "train" not in ids:
            ids = {"train": sorted(p.stem for p in self.annotations_dir.glob("*.xml"))}
            if not ids["train"]:
                raise FileNotFoundError(f"data.root: no .xml files in {self.annotations_dir}")
        self._check_lists_disjoint(ids)
        return ids

    def _check_lists_disjoint(self, ids: Mapping[str, Sequence[str]]) -> None:
        """Different lists sharing an id (``trainval`` and ``val``) would leak it; one list
        given for two splits is the config's choice."""
        lists = sorted({(name, split) for split, name in self.split_lists.items() if split in ids})
        for i, (name_a, split_a) in enumerate(lists):
            for name_b, split_b in lists[i + 1 :]:
                shared = sorted(set(ids[split_a]) & set(ids[split_b])) if name_a != name_b else []
                if shared:
                    raise ValueError(
                        f"data.splits: ImageSets/Main lists {name_a}.txt ({split_a}) and "
                        f"{name_b}.txt ({split_b}) share {len(shared)} id(s), e.g. {shared[0]}; "
                        "an image in two splits leaks into evaluation: use disjoint lists "
                        "(e.g. train: train, val: val)"
                    )

    def read_splits(self) -> tuple[list[str], Splits]:
        """Parse every listed file, then label and check them (see the class docstring)."""
        issues = AnnotationIssues(self.on_bad_annotation)
        parsed: dict[str, list[tuple[str, VocFile]]] = {}
        for split, ids in self._ids().items():
            parsed[split] = []
            for image_id in ids:
                xml_path = self.annotations_dir / f"{image_id}.xml"
                try:
                    parsed[split].append((os.fspath(xml_path), parse_voc(xml_path)))
                except AnnotationError as err:
                    issues.report(str(err))
        names = self.classes or sorted(
            {name for files in parsed.values() for _, (_, _, objs) in files for name, _ in objs}
        )
        labels = {name: k + 1 for k, name in enumerate(names)}
        splits: Splits = {}
        for split, files in parsed.items():
            splits[split] = []
            for xml_path, (filename, size, objects) in files:
                sample = self._sample(xml_path, filename, size, objects, labels, issues)
                if sample is not None:
                    splits[split].append(sample)
        issues.warn(self.annotations_dir)
        self.skipped_annotations = len(issues.messages)
        return names, self.carve(splits)

    def _sample(
        self,
        xml_path: str,
        filename: str,
        size: tuple[int, int],
        objects: list[tuple[str, Box]],
        labels: Mapping[str, int],
        issues: AnnotationIssues,
    ) -> BoxSample | None:
        image = self.images_dir / filename
        if problem := file_problem(image):
            issues.report(f"{xml_path}: filename: {filename!r} {problem} ({image})")
            return None
        unknown = [name for name, _ in objects if name not in labels]
        if unknown:
            issues.report(
                f"{xml_path}: object.name: {unknown[0]!r} is not in data.classes {list(labels)}"
            )
            return None
        picked = pick_box([(labels[name], box) for name, box in objects], self.multiple_objects)
        if picked is None:
            issues.report(
                f"{xml_path}: {len(objects)} objects but data.multiple_objects=error allows one "
                "(data.multiple_objects=largest keeps the largest)"
            )
            return None
        return BoxSample(os.fspath(image), picked[0], picked[1], size, xml_path)
