"""YOLO (Ultralytics) detection files: the dataset's ``data.yaml`` and one label file per image.

The layout::

    <root>/data.yaml               names: [cat, dog] (or {0: cat, 1: dog}); train: images/train;
                                   val: images/val; test: images/test (optional); path: (optional)
    <root>/images/train/a.jpg
    <root>/labels/train/a.txt      one "class x_center y_center width height" line per object,
                                   coordinates normalized to the image width and height

``train``/``val``/``test`` are folders of images (searched recursively) or ``.txt`` files
listing image paths, or lists of those; relative paths are relative to ``path`` (itself relative
to the root when relative), or to the root when there is no ``path``. An entry starting with
``../`` that does not exist is tried without it, as Ultralytics does (Roboflow exports write
``../train/images`` beside a ``data.yaml`` in the same folder). The label file of an image is its
path with the last ``images`` folder replaced by ``labels`` and the suffix by ``.txt``; an empty
or missing label file makes the image a negative (no object).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from cvtasks.data.annotations import AnnotationError, AnnotationIssues
from cvtasks.data.boxes import Box
from cvtasks.data.images import file_problem

TOLERANCE = 1.0  # pixels a box may pass an edge by (rounding in exported files); clipped
SPLITS = ("train", "val", "test")
FIELDS = "class x_center y_center width height"


class YoloData(NamedTuple):
    """What ``data.yaml`` says: class names in index order, and split → image sources."""

    path: Path
    names: list[str]
    splits: dict[str, list[Path]]


def _names(raw: Any, where: str) -> list[str]:
    """``names`` as a list in class-index order; a mapping must have the keys ``0..N-1``."""
    if isinstance(raw, Mapping):
        keys = list(raw)
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in keys) or sorted(
            keys
        ) != list(range(len(keys))):
            raise AnnotationError(
                f"{where}: names: the keys {keys} are not the class indices 0..{len(keys) - 1}"
            )
        raw = [raw[k] for k in range(len(keys))]
    if not isinstance(raw, list) or not raw:
        raise AnnotationError(
            f"{where}: names: expected a list of class names or {{index: name}}, got {raw!r}"
        )
    names = [str(n) for n in raw]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise AnnotationError(f"{where}: names: {twice[0]!r} names two classes")
    return names


def _source(base: Path, entry: Any, where: str, split: str) -> Path:
    """One ``train``/``val``/``test`` entry as a path (a folder or a ``.txt`` list)."""
    if not isinstance(entry, str) or not entry.strip():
        raise AnnotationError(f"{where}: {split}: {entry!r} is not a path")
    path = base / Path(entry).expanduser()
    if not path.exists() and entry.startswith("../"):
        path = base / entry[3:]  # Ultralytics' fallback for Roboflow's ../train/images
    if path.is_dir() or (path.is_file() and path.suffix == ".txt"):
        return path
    problem = file_problem(path) or "is not a folder of images or a .txt list of images"
    raise AnnotationError(f"{where}: {split}: {entry!r} {problem} ({path})")


def load_data_yaml(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> YoloData:
    """Read a ``data.yaml``: the class names and each split's image folders or list files.

    Args:
        path: the ``data.yaml`` file.
        root: the dataset folder a relative ``path:`` key (and, without one, the splits) is
            relative to.

    Raises:
        AnnotationError: naming the file and the key: unreadable YAML, no ``names`` or ``train``,
            a split that names no existing folder or list, ``nc`` disagreeing with ``names``.
    """
    where = os.fspath(path)
    if problem := file_problem(path):
        raise AnnotationError(
            f"{where} {problem}; a YOLO dataset needs a data.yaml with names and train, val "
            "(and optional test) image folders"
        )
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise AnnotationError(f"{where}: not a readable YAML file: {err}") from err
    if not isinstance(data, dict):
        raise AnnotationError(f"{where}: expected a mapping with names, train, val; got {data!r}")
    if "names" not in data:
        raise AnnotationError(f"{where}: names: missing (the class names, in index order)")
    names = _names(data["names"], where)
    if "nc" in data and data["nc"] != len(names):
        raise AnnotationError(f"{where}: nc: {data['nc']!r} but names lists {len(names)} classes")
    base = Path(root).expanduser()
    if data.get("path"):
        base = base / Path(str(data["path"])).expanduser()
        if not base.is_dir():
            raise AnnotationError(
                f"{where}: path: {data['path']!r} is not a folder ({base}); make it relative to "
                "data.root or remove it"
            )
    if not data.get("train"):
        raise AnnotationError(f"{where}: train: missing (e.g. train: images/train)")
    splits = {}
    for split in SPLITS:
        entries = data.get(split)
        if entries:  # Ultralytics leaves an unused test split empty
            entries = entries if isinstance(entries, list) else [entries]
            splits[split] = [_source(base, e, where, split) for e in entries]
    return YoloData(Path(path), names, splits)


def label_path(image: str | os.PathLike[str]) -> Path | None:
    """The label file of ``image``: the last ``images`` folder → ``labels``, suffix → ``.txt``.

    Returns:
        ``None`` when no folder on the image's path is called ``images``.
    """
    parts = Path(image).parts
    folders = parts[:-1]
    if "images" not in folders:
        return None
    k = len(folders) - 1 - folders[::-1].index("images")
    return Path(*parts[:k], "labels", *parts[k + 1 :]).with_suffix(".txt")


def _numbers(fields: list[str], where: str) -> list[float]:
    values = []
    for field in fields:
        try:
            value = float(field)
        except ValueError:
            raise AnnotationError(f"{where}: {field!r} is not a number") from None
        if not math.isfinite(value):
            raise AnnotationError(f"{where}: {field!r} is not a finite number")
        values.append(value)
    return values


def parse_line(line: str, where: str, size: tuple[int, int], num_classes: int) -> tuple[int, Box]:
    """One label line as ``(class index, xyxy box in pixels)``.

    Args:
        line: ``"class x_center y_center width height"``, coordinates in [0, 1].
        where: ``file:line`` for messages.
        size: ``(height, width)`` of the image.
        num_classes: the number of names; a class index must be below it.

    Raises:
        AnnotationError: naming ``where``: a field count other than 5, a field that is not a
            number, a class outside ``names``, a box with no area or outside the image.
    """
    fields = line.split()
    if len(fields) != 5:
        raise AnnotationError(f"{where}: {len(fields)} fields, expected 5: {FIELDS}")
    try:
        label = int(fields[0])
    except ValueError:
        raise AnnotationError(f"{where}: class {fields[0]!r} is not a whole number") from None
    if not 0 <= label < num_classes:
        raise AnnotationError(
            f"{where}: class {label} is not in names (indices 0..{num_classes - 1})"
        )
    cx, cy, w, h = _numbers(fields[1:], where)
    if w <= 0 or h <= 0:
        raise AnnotationError(f"{where}: width {w:g} and height {h:g} must be above 0")
    height, width = size
    x0, x1 = (cx - w / 2) * width, (cx + w / 2) * width
    y0, y1 = (cy - h / 2) * height, (cy + h / 2) * height
    if x0 < -TOLERANCE or y0 < -TOLERANCE or x1 > width + TOLERANCE or y1 > height + TOLERANCE:
        raise AnnotationError(
            f"{where}: box ({cx:g} {cy:g} {w:g} {h:g}) lies outside the {width}x{height} image "
            "(coordinates are normalized to 0..1)"
        )
    return label, (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))


def parse_labels(
    path: str | os.PathLike[str],
    size: tuple[int, int],
    num_classes: int,
    issues: AnnotationIssues | None = None,
) -> list[tuple[int, Box]] | None:
    """The objects of one label file, ``[(class index, xyxy box in pixels), ...]``.

    Blank lines are passed over; an empty file is an image without objects.

    Args:
        path: the label file.
        size: ``(height, width)`` of its image, which the coordinates are normalized to.
        num_classes: the number of class names.
        issues: where a bad line goes: reported (raised under ``"error"``) and left out under
            ``"skip"``. ``None`` raises at the first bad line.

    Returns:
        The objects, or ``None`` when the file does not exist (an image without objects too,
        but the caller may want to know that no label file was found at all).

    Raises:
        AnnotationError: naming ``file:line`` (see :func:`parse_line`), or the file when it is
            not a readable text file.
    """
    problem = file_problem(path)
    if problem == "does not exist":
        return None
    where = os.fspath(path)
    if problem:  # a FIFO would block the read forever
        raise AnnotationError(f"{where}: {problem}")
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise AnnotationError(f"{where}: not a readable label text file: {err}") from err
    objects = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            objects.append(parse_line(line, f"{where}:{n}", size, num_classes))
        except AnnotationError as err:
            if issues is None:
                raise
            issues.report(str(err))
    return objects


def listed_images(path: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """The images a ``.txt`` list names, ``[(image path, "list.txt:line"), ...]``.

    One path per non-blank line; a relative path (``./images/train/a.jpg``) is relative to the
    list's folder.

    Raises:
        AnnotationError: the list is not a readable text file.
    """
    where = os.fspath(path)
    if problem := file_problem(path):
        raise AnnotationError(f"{where}: {problem}")
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise AnnotationError(f"{where}: not a readable list of images: {err}") from err
    folder = Path(path).parent
    return [
        (folder / Path(line.strip()).expanduser(), f"{where}:{n}")
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
