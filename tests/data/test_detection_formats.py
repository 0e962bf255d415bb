"""One dataset written as COCO JSON, Pascal VOC XML and YOLO text reads to the same objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvtasks.registry import DATASETS
from tests.data.detection_files import CLASSES, IMAGES, write_coco, write_voc, write_yolo

OPTIONS = {"image_size": 16, "augment": [], "val_fraction": 0, "test_fraction": 0}


def objects(module) -> dict[str, list[tuple[str, tuple[float, ...], bool]]]:
    """Image stem → sorted ``(class name, box rounded to 1e-6 pixels, crowd)`` of a reader."""
    names = module.class_names
    return {
        Path(s.path).stem: sorted(
            (names[label], tuple(round(v, 6) for v in box), crowd)
            for box, label, crowd in zip(s.boxes, s.labels, s.crowd, strict=True)
        )
        for s in module.splits["train"]
    }


@pytest.fixture
def readers(tmp_path):
    write_coco(tmp_path / "coco")
    write_voc(tmp_path / "voc")
    write_yolo(tmp_path / "yolo")
    coco = {"root": str(tmp_path / "coco" / "images"), "annotations": "../ann.json"}
    return {
        "coco": DATASETS.build("coco_detection", **coco, **OPTIONS),
        "voc": DATASETS.build("voc_detection", root=str(tmp_path / "voc"), **OPTIONS),
        "yolo": DATASETS.build("yolo_detection", root=str(tmp_path / "yolo"), **OPTIONS),
    }


def test_the_three_formats_read_the_same_objects(readers):
    # independent oracle: the objects the files were written from
    written = {
        image.stem: sorted((o.name, tuple(map(float, o.box)), o.crowd) for o in image.objects)
        for image in IMAGES
    }
    assert written["c"] == [] and any(o[2] for o in written["b"])  # a negative and a crowd box
    coco, voc, yolo = (objects(readers[k]) for k in ("coco", "voc", "yolo"))
    assert coco == written  # iscrowd: 1 is a crowd box
    assert voc == written  # <difficult>1 is a crowd box
    without_crowd = {stem: [o for o in objs if not o[2]] for stem, objs in written.items()}
    assert yolo == without_crowd  # YOLO has no crowd flag: the box is not written
    sizes = {k: {Path(s.path).stem: s.size for s in m.splits["train"]} for k, m in readers.items()}
    assert sizes["coco"] == sizes["voc"] == sizes["yolo"] == {i.stem: i.size for i in IMAGES}


def test_class_order_is_the_files_order_or_the_one_given(readers, tmp_path):
    assert readers["coco"].class_names == readers["yolo"].class_names == CLASSES
    assert readers["voc"].class_names == sorted(CLASSES)  # XML files list no classes
    ordered = DATASETS.build(
        "voc_detection", root=str(tmp_path / "voc"), classes=CLASSES, **OPTIONS
    )
    by_path = {Path(s.path).stem: s.labels for s in ordered.splits["train"]}
    assert by_path == {Path(s.path).stem: s.labels for s in readers["coco"].splits["train"]}
