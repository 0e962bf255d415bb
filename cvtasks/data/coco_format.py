"""COCO JSON files: loading and checking what every COCO reader (boxes, keypoints) relies on.

A COCO file is ``{"images": [...], "annotations": [...], "categories": [...]}``. :func:`load_coco`
reads one and checks image ``id``, ``file_name`` and (when given) ``width``/``height``; category
``id``/``name``; annotation ``image_id``/``category_id``. The task-specific field of an annotation
(``bbox``, ``keypoints``) is checked by the reader that uses it, through :meth:`CocoFile.where`
for messages and :class:`~cvtasks.data.annotations.AnnotationIssues` for the policy.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvtasks.data.annotations import AnnotationError, AnnotationIssues
from cvtasks.data.images import file_problem, read_image_size


@dataclass(frozen=True)
class CocoImage:
    """One checked entry of ``images``.

    Attributes:
        id: the image id.
        file_name: path relative to the images folder.
        width: declared width in pixels (``None`` when the file omits it).
        height: declared height in pixels (``None`` when the file omits it).
        position: index in the file's ``images`` list (for messages).
    """

    id: int
    file_name: str
    width: int | None
    height: int | None
    position: int


@dataclass
class CocoFile:
    """A loaded, checked COCO file.

    Attributes:
        path: the file.
        images: id → image, in file order.
        categories: id → the category's dict (``name`` checked; ``keypoints``/``skeleton`` kept).
        annotations: image id → ``(position in "annotations", annotation dict)`` pairs, only for
            annotations whose ``image_id`` and ``category_id`` exist.
    """

    path: Path
    images: dict[int, CocoImage]
    categories: dict[int, dict[str, Any]]
    annotations: dict[int, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)

    def where(self, section: str, position: int, key: str | None = None) -> str:
        """``"<file>: annotations[12].bbox"``, the prefix of every message about a field."""
        return f"{self.path}: {section}[{position}]" + (f".{key}" if key else "")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _section(data: dict[str, Any], key: str, path: Path) -> list[dict[str, Any]]:
    value = data.get(key)
    if not isinstance(value, list):
        got = "missing" if value is None else type(value).__name__
        raise AnnotationError(f"{path}: '{key}' must be a list, got {got}")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise AnnotationError(f"{path}: {key}[{i}] must be an object, got {item!r}")
    return value


def load_coco(path: str | os.PathLike[str], issues: AnnotationIssues | None = None) -> CocoFile:
    """Read a COCO JSON file and check the fields every reader uses.

    Structural faults (not JSON, a section that is not a list, an image or category without a
    usable ``id``, duplicated ids, a bad ``file_name``, a ``width`` or ``height`` that is not a
    positive integer) always raise. An annotation whose ``image_id`` or ``category_id`` names
    nothing goes to ``issues``.

    Args:
        path: the ``.json`` file.
        issues: the bad-annotation policy; default ``AnnotationIssues("error")``.

    Returns:
        The checked :class:`CocoFile`.

    Raises:
        AnnotationError: naming the file and the field.
        FileNotFoundError: the file does not exist.
    """
    path = Path(path).expanduser()
    issues = issues or AnnotationIssues("error")
    if problem := file_problem(path):
        raise FileNotFoundError(f"data.annotations: the COCO file {path} {problem}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AnnotationError(f"{path}: not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise AnnotationError(
            f"{path}: expected a JSON object with images, annotations, categories"
        )

    coco = CocoFile(path, images={}, categories={})
    for i, image in enumerate(_section(data, "images", path)):
        where = coco.where("images", i)
        image_id = image.get("id")
        if not _is_int(image_id) or image_id in coco.images:
            raise AnnotationError(f"{where}.id: {image_id!r} is not a unique integer")
        name = image.get("file_name")
        if not isinstance(name, str) or not name:
            raise AnnotationError(f"{where}.file_name: {name!r} is not a file name")
        for key in ("width", "height"):
            if key in image and (not _is_int(image[key]) or image[key] < 1):
                raise AnnotationError(f"{where}.{key}: {image[key]!r} is not a positive integer")
        coco.images[image_id] = CocoImage(
            image_id, name, image.get("width"), image.get("height"), i
        )
    for i, category in enumerate(_section(data, "categories", path)):
        where = coco.where("categories", i)
        cat_id = category.get("id")
        if not _is_int(cat_id) or cat_id in coco.categories:
            raise AnnotationError(f"{where}.id: {cat_id!r} is not a unique integer")
        if not isinstance(category.get("name"), str) or not category["name"]:
            raise AnnotationError(f"{where}.name: {category.get('name')!r} is not a name")
        coco.categories[cat_id] = category
    for i, ann in enumerate(_section(data, "annotations", path)):
        if not _is_int(ann.get("image_id")) or ann["image_id"] not in coco.images:
            issues.report(
                f"{coco.where('annotations', i, 'image_id')}: {ann.get('image_id')!r} "
                "names no entry of 'images'"
            )
        elif not _is_int(ann.get("category_id")) or ann["category_id"] not in coco.categories:
            issues.report(
                f"{coco.where('annotations', i, 'category_id')}: "
                f"{ann.get('category_id')!r} names no entry of 'categories'"
            )
        else:
            coco.annotations.setdefault(ann["image_id"], []).append((i, ann))
    return coco


def image_size(image: CocoImage, path: Path) -> tuple[int, int]:
    """``(height, width)`` as declared, or read from the file's header when the JSON omits it.

    A header size is the size :func:`~cvtasks.data.images.read_image` returns: turned by the
    file's EXIF orientation, like the image itself.

    Raises:
        BadImageError: the size is not declared and the file cannot be opened.
    """
    if image.width is not None and image.height is not None:
        return image.height, image.width
    return read_image_size(path)


def image_path(coco: CocoFile, image: CocoImage, images_root: str | os.PathLike[str]) -> Path:
    """Where ``file_name`` points: under ``images_root``, else beside the JSON file.

    Labelling tools export each split as a folder holding its images and its own JSON, with
    ``file_name`` relative to that folder; datasets laid out the COCO way keep ``file_name``
    relative to an images folder. Both resolve here.

    Args:
        coco: the loaded file (its folder is the second place looked in).
        image: the image entry.
        images_root: the folder ``file_name`` is first taken relative to.

    Returns:
        The first of the two paths that is a readable file, else the first (for the message).
    """
    first = Path(images_root).expanduser() / image.file_name
    beside = coco.path.parent / image.file_name
    if file_problem(first) is None or file_problem(beside) is not None:
        return first
    return beside


def missing_image_message(
    coco: CocoFile, image: CocoImage, images_root: str | os.PathLike[str]
) -> str | None:
    """The one-line problem with the file of ``image``, or ``None`` when it can be read.

    Names the entry, the ``file_name`` and both places it was looked for.
    """
    path = image_path(coco, image, images_root)
    problem = file_problem(path)
    if problem is None:
        return None
    beside = coco.path.parent / image.file_name
    places = f"{path}" if beside == path else f"looked for {path} and {beside}"
    return (
        f"{coco.where('images', image.position, 'file_name')}: {image.file_name!r} {problem} "
        f"({places})"
    )
