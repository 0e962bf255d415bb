"""One small detection dataset written as COCO JSON, Pascal VOC XML and YOLO text files.

Boxes are whole pixels, so VOC's 1-based inclusive corners and YOLO's normalized centres both
convert back to them exactly (YOLO up to float rounding). A crowd object is written as COCO
``iscrowd: 1`` and VOC ``<difficult>1``; YOLO has no such flag and leaves it out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from PIL import Image


class Obj(NamedTuple):
    name: str
    box: tuple[int, int, int, int]  # x_min, y_min, x_max, y_max: continuous pixel edges
    crowd: bool = False


class Img(NamedTuple):
    stem: str
    size: tuple[int, int]  # height, width
    objects: tuple[Obj, ...]


CLASSES = ["cat", "dog", "bird"]
IMAGES = (
    Img("a", (30, 40), (Obj("dog", (4, 6, 12, 18)), Obj("cat", (20, 2, 40, 30)))),
    Img("b", (24, 32), (Obj("bird", (0, 0, 8, 8)), Obj("cat", (10, 10, 30, 20), crowd=True))),
    Img("c", (20, 20), ()),  # a negative image
    Img("d", (30, 40), (Obj("dog", (1, 1, 39, 29)), Obj("dog", (5, 5, 9, 9)))),
)


def write_image(path: Path, size: tuple[int, int], value: int = 90) -> Path:
    """A uniform RGB PNG of ``size`` (height, width)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = size
    Image.new("RGB", (width, height), (value, 10, 10)).save(path)
    return path


def write_coco(root: Path, images=IMAGES, classes=CLASSES) -> Path:
    """``root/images/<stem>.png`` and ``root/ann.json`` (category ids 1..C in class order)."""
    entries, annotations = [], []
    for i, image in enumerate(images):
        write_image(root / "images" / f"{image.stem}.png", image.size, 10 * i)
        height, width = image.size
        entries.append(
            {"id": i + 1, "file_name": f"{image.stem}.png", "width": width, "height": height}
        )
        for obj in image.objects:
            x0, y0, x1, y1 = obj.box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": classes.index(obj.name) + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": int(obj.crowd),
                }
            )
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(classes)]
    path = root / "ann.json"
    path.write_text(
        json.dumps({"images": entries, "annotations": annotations, "categories": categories})
    )
    return path


def voc_xml(image: Img, filename: str, difficult: bool = True) -> str:
    """The VOC XML of ``image`` (crowd objects as ``<difficult>1``; none when not ``difficult``)."""
    height, width = image.size
    body = "".join(
        f"<object><name>{o.name}</name>"
        + (f"<difficult>{int(o.crowd)}</difficult>" if difficult else "")
        + f"<bndbox><xmin>{o.box[0] + 1}</xmin><ymin>{o.box[1] + 1}</ymin>"
        f"<xmax>{o.box[2]}</xmax><ymax>{o.box[3]}</ymax></bndbox></object>"
        for o in image.objects
    )
    return (
        f"<annotation><folder>VOC</folder><filename>{filename}</filename><size>"
        f"<width>{width}</width><height>{height}</height><depth>3</depth></size>{body}"
        "</annotation>"
    )


def write_voc(
    root: Path,
    images=IMAGES,
    annotations_dir: str = "Annotations",
    images_dir: str = "JPEGImages",
) -> Path:
    """``root/<annotations_dir>/<stem>.xml`` and ``root/<images_dir>/<stem>.png``."""
    for i, image in enumerate(images):
        write_image(root / images_dir / f"{image.stem}.png", image.size, 10 * i)
        xml = root / annotations_dir / f"{image.stem}.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        xml.write_text(voc_xml(image, f"{image.stem}.png"))
    return root


def yolo_lines(image: Img, classes=CLASSES) -> str:
    """The label file of ``image``: one normalized line per object that is not a crowd."""
    height, width = image.size
    lines = []
    for o in image.objects:
        if not o.crowd:
            x0, y0, x1, y1 = o.box
            cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
            w, h = (x1 - x0) / width, (y1 - y0) / height
            lines.append(f"{classes.index(o.name)} {cx!r} {cy!r} {w!r} {h!r}\n")
    return "".join(lines)


def write_yolo(root: Path, images=IMAGES, classes=CLASSES, split: str = "train") -> Path:
    """``root/images/<split>/<stem>.png``, ``root/labels/<split>/<stem>.txt`` (empty for an
    image without objects) and ``root/data.yaml`` naming the split."""
    for i, image in enumerate(images):
        write_image(root / "images" / split / f"{image.stem}.png", image.size, 10 * i)
        label = root / "labels" / split / f"{image.stem}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(yolo_lines(image, classes))
    names = "".join(f"  {k}: {name}\n" for k, name in enumerate(classes))
    (root / "data.yaml").write_text(f"{split}: images/{split}\nnames:\n{names}")
    return root
