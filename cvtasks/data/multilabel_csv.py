"""Multi-label images listed in a CSV file: ``image,labels`` with ``;``-separated class names.

``data=multilabel_csv data.root=IMAGES data.csv=FILE``. ``image`` is a path relative to
``data.root`` (or absolute); ``labels`` the names of the classes in the image, ``;``-separated
(empty: none of them). An optional ``split`` column (``train``, ``val``, ``test``, or empty for
train) fixes the splits; a split no row names is carved out of train, seeded.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from cvtasks.data.multilabel import SPLITS, LabelledImage, MultilabelDataModule
from cvtasks.registry import DATASETS

REQUIRED_COLUMNS = ("image", "labels")


def read_label_csv(
    csv_path: str | os.PathLike[str], root: str | os.PathLike[str]
) -> list[LabelledImage]:
    """The rows of a label CSV, with image paths resolved under ``root`` and checked.

    Args:
        csv_path: the CSV file (header ``image,labels[,split]``).
        root: the folder the ``image`` paths are relative to.

    Returns:
        One :class:`LabelledImage` per row, in file order.

    Raises:
        FileNotFoundError: the CSV file or the images folder is missing.
        ValueError: a missing column, an empty image cell, an image listed twice or missing, an
            unknown split; each message names the file and line.
    """
    csv_path, root = Path(csv_path).expanduser(), Path(root).expanduser()
    if not csv_path.is_file():
        raise FileNotFoundError(f"data.csv: the label file {csv_path} does not exist")
    if not root.is_dir():
        raise FileNotFoundError(f"data.root: the images folder {root} does not exist")
    with open(csv_path, newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ValueError(
                f"{csv_path}: the header lacks column(s) {', '.join(missing)}; the first line "
                f"must name image,labels (and optionally split), it has {','.join(columns)}"
            )
        reader.fieldnames = columns
        rows, seen = [], {}
        for record in reader:
            row = _read_row(record, f"{csv_path}:{reader.line_num}", root)
            if row.path in seen:
                raise ValueError(
                    f"{csv_path}:{reader.line_num}: image {record['image'].strip()} is listed "
                    f"again (first on line {seen[row.path]}); give each image one row"
                )
            seen[row.path] = reader.line_num
            rows.append(row)
    if not rows:
        raise ValueError(f"{csv_path}: no rows under the header image,labels")
    return rows


def _read_row(record: dict[str, Any], where: str, root: Path) -> LabelledImage:
    """One checked row; ``where`` is ``file:line`` for messages."""
    if None in record:  # more cells than columns
        raise ValueError(
            f"{where}: more cells than the header's columns; separate label names with ';', not ','"
        )
    image = (record["image"] or "").strip()
    if not image:
        raise ValueError(f"{where}: the image cell is empty; give a path relative to data.root")
    path = root / image
    if not path.is_file():
        raise ValueError(
            f"{where}: image {image} is not a file under data.root={root}; fix the path or "
            "drop the row"
        )
    split = (record.get("split") or "").strip() or None
    if split is not None and split not in SPLITS:
        raise ValueError(
            f"{where}: split {split!r} is not one of {', '.join(SPLITS)} (or empty for train)"
        )
    labels = frozenset(n.strip() for n in (record["labels"] or "").split(";") if n.strip())
    return LabelledImage(os.fspath(path), labels, split)


@DATASETS.register("multilabel_csv")
class MultilabelCsvDataModule(MultilabelDataModule):
    """Images under ``root`` with their label sets in a CSV file (see the module docstring).

    Args:
        root: the images folder.
        csv: the label file.
        **kwargs: :class:`~cvtasks.data.multilabel.MultilabelDataModule` options (fractions,
            split seed) and :class:`~cvtasks.data.datamodule.VisionDataModule` ones.
    """

    def __init__(
        self, root: str | os.PathLike[str], csv: str | os.PathLike[str], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.csv = Path(csv).expanduser()

    def read_rows(self) -> list[LabelledImage]:
        """The CSV's rows."""
        return read_label_csv(self.csv, self.root)

    def source_name(self) -> str:
        """The CSV file."""
        return str(self.csv)
