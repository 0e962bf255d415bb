"""Pascal VOC files: one XML parser and the folder layout, shared by the VOC box readers.

The VOC layout::

    <root>/Annotations/<id>.xml       <annotation> with <filename>, <size>, <object>s
    <root>/JPEGImages/<filename>
    <root>/ImageSets/Main/<split>.txt  ids, one per line (optional)

``annotations_dir`` and ``images_dir`` name other folders under the root (``annotations/`` and
``images/`` as many labelling tools export them). VOC pixel indices start at 1 and include both
ends, so ``<xmin>..<xmax>`` becomes the continuous ``[xmin - 1, xmax]``. ``<difficult>1`` marks an
object VOC's own evaluation ignores; it is read into :attr:`VocObject.difficult`.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from cvtasks.data.annotations import AnnotationError, AnnotationIssues
from cvtasks.data.boxes import Box
from cvtasks.data.images import file_problem

TOLERANCE = 1.0  # pixels a box may pass an edge by (rounding in exported files); clipped
ANNOTATIONS_DIR = "Annotations"
IMAGES_DIR = "JPEGImages"
SPLITS = ("train", "val", "test")


class VocObject(NamedTuple):
    """One ``<object>``: its class name, ``xyxy`` box in pixels and ``<difficult>`` flag."""

    name: str
    box: Box
    difficult: bool = False


class VocFile(NamedTuple):
    """One XML file: the image ``filename``, its ``(height, width)`` and its objects."""

    filename: str
    size: tuple[int, int]
    objects: list[VocObject]


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


def _difficult(obj: ET.Element, where: str) -> bool:
    """``<difficult>``: 0 or 1, absent meaning 0 (tools other than VOC's often leave it out)."""
    node = obj.find("difficult")
    text = (node.text or "").strip() if node is not None else ""
    if text not in ("", "0", "1"):
        raise AnnotationError(f"{where}.difficult: {text!r} is not 0 or 1")
    return text == "1"


def _object(obj: ET.Element, where: str, width: float, height: float) -> VocObject:
    """One ``<object>`` checked: a name, a box with area inside the image, a 0/1 flag."""
    name = _text(obj, "name", where)
    x0, y0, x1, y1 = (_number(obj, f"bndbox/{c}", where) for c in ("xmin", "ymin", "xmax", "ymax"))
    x0, y0 = x0 - 1, y0 - 1  # 1-based inclusive pixel indices → continuous edges
    if x1 <= x0 or y1 <= y0:
        raise AnnotationError(
            f"{where}.bndbox: ({x0 + 1:g}, {y0 + 1:g}, {x1:g}, {y1:g}) has no area"
        )
    if x0 < -TOLERANCE or y0 < -TOLERANCE or x1 > width + TOLERANCE or y1 > height + TOLERANCE:
        raise AnnotationError(
            f"{where}.bndbox: ({x0 + 1:g}, {y0 + 1:g}, {x1:g}, {y1:g}) lies outside the "
            f"{width:g}x{height:g} image"
        )
    box = (max(0.0, x0), max(0.0, y0), min(width, x1), min(height, y1))
    return VocObject(name, box, _difficult(obj, where))


def parse_voc(xml_path: str | os.PathLike[str], issues: AnnotationIssues | None = None) -> VocFile:
    """Read one VOC annotation file.

    Args:
        xml_path: the XML file.
        issues: where a bad ``<object>`` goes: reported (raised under ``"error"``) and left
            out of the file's objects under ``"skip"``. ``None`` raises, so that the caller
            drops the whole file.

    Returns:
        ``(filename, (height, width), [VocObject(name, xyxy box, difficult), ...])``.

    Raises:
        AnnotationError: naming the file and the field (``object[1].bndbox.xmax``): unreadable
            XML, a missing field, a box with no area or outside the image, a ``difficult`` flag
            other than 0 or 1.
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
        try:
            objects.append(_object(obj, f"{where}: object[{k}]", width, height))
        except AnnotationError as err:
            if issues is None:
                raise
            issues.report(str(err))
    return VocFile(filename, (int(height), int(width)), objects)


class VocFolder:
    """A VOC folder: which XML files each split lists, and where their images are.

    Args:
        root: the VOC folder (``VOCdevkit/VOC2007``).
        splits: split → ``ImageSets/Main`` list name, e.g. ``{train: trainval, test: test}``;
            ``None`` reads ``train``, ``val`` and ``test``.
        annotations_dir: folder of the XML files under ``root``; ``None``: ``Annotations``.
        images_dir: folder of the images under ``root``; ``None``: ``JPEGImages``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        splits: Mapping[str, str] | None = None,
        annotations_dir: str | None = None,
        images_dir: str | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        self.split_lists = dict(splits or {s: s for s in SPLITS})
        unknown = set(self.split_lists) - set(SPLITS)
        if unknown:
            raise ValueError(f"data.splits keys must be train, val, test; got {sorted(unknown)}")
        self.annotations_dir = self.root / (annotations_dir or ANNOTATIONS_DIR)
        self.images_dir = self.root / (images_dir or IMAGES_DIR)

    def ids(self) -> dict[str, list[str]]:
        """Split → annotation ids, from the ``ImageSets/Main`` lists that exist.

        Without a train list every ``.xml`` file is train (and the lists of the other splits
        are not read: they would name files of that same pool).

        Raises:
            FileNotFoundError: the annotations folder is missing or holds no ``.xml`` file.
            ValueError: two different lists share an id.
        """
        if not self.annotations_dir.is_dir():
            raise FileNotFoundError(
                f"data.root: {self.annotations_dir} does not exist; expected <root>/"
                f"{ANNOTATIONS_DIR}/*.xml and <root>/{IMAGES_DIR}/ (the VOC layout), or set "
                "data.annotations_dir and data.images_dir to the folders under data.root"
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

    def parse(self, issues: AnnotationIssues) -> dict[str, list[tuple[str, VocFile]]]:
        """Split → ``(xml path, parsed file)`` of every listed id; a file with any problem is
        reported to ``issues`` and left out."""
        return {split: self.parse_split(ids, issues) for split, ids in self.ids().items()}

    def parse_split(
        self, ids: Sequence[str], issues: AnnotationIssues, skip_objects: bool = False
    ) -> list[tuple[str, VocFile]]:
        """``(xml path, parsed file)`` of each id; an unreadable file is reported to ``issues``
        and left out, and so is a file with a bad object unless ``skip_objects`` (then only
        that object is left out, see :func:`parse_voc`)."""
        parsed = []
        for image_id in ids:
            xml_path = self.annotations_dir / f"{image_id}.xml"
            try:
                voc = parse_voc(xml_path, issues if skip_objects else None)
            except AnnotationError as err:
                issues.report(str(err))
                continue
            parsed.append((os.fspath(xml_path), voc))
        return parsed

    def image(self, xml_path: str, filename: str, issues: AnnotationIssues) -> str | None:
        """The image file an XML file names, or ``None`` (reported) when it cannot be read."""
        image = self.images_dir / filename
        if problem := file_problem(image):
            issues.report(f"{xml_path}: filename: {filename!r} {problem} ({image})")
            return None
        return os.fspath(image)


def class_names(
    parsed: Mapping[str, Sequence[tuple[str, VocFile]]], classes: Sequence[str] | None
) -> list[str]:
    """``classes`` when given, else the sorted object names found in every parsed file."""
    if classes:
        return list(classes)
    return sorted({o.name for files in parsed.values() for _, voc in files for o in voc.objects})
