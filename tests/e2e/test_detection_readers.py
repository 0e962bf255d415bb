"""Whole train.py runs of the detection task on VOC XML and YOLO text datasets written here."""

from __future__ import annotations

import pytest

from tests.conftest import TINY
from tests.data.detection_files import CLASSES, IMAGES, Img, write_voc, write_yolo

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

SMALL = ("data.image_size=64", "data.num_workers=0", "data.batch_size=4")
#: four copies of the small dataset under other names: enough to carve val and test from
MANY = [Img(f"{k}{image.stem}", image.size, image.objects) for k in range(4) for image in IMAGES]


@pytest.mark.parametrize(("reader", "write"), [("voc", write_voc), ("yolo", write_yolo)])
def test_train_detection_on_a_written_dataset(run_train, tmp_path, reader, write):
    write(tmp_path / "data", MANY)
    data = (f"data={reader}_detection", f"data.root={tmp_path / 'data'}")
    metrics = run_train("task=detection", *data, *SMALL, *TINY).check().metrics
    assert {f"test/ap/{name}" for name in CLASSES} <= set(metrics)
    assert 0.0 <= metrics["val/map50"] <= 1.0 and metrics["monitor"] == "val/map50"


def test_a_bad_yolo_line_stops_the_run_naming_file_and_line(run_train, tmp_path):
    write_yolo(tmp_path / "data", MANY)
    labels = tmp_path / "data" / "labels" / "train" / "0a.txt"
    labels.write_text(labels.read_text() + "7 0.5 0.5 0.1 0.1\n")
    data = ("data=yolo_detection", f"data.root={tmp_path / 'data'}")
    run = run_train("task=detection", *data, *SMALL, *TINY)
    assert run.proc.returncode != 0
    assert f"{labels}:3: class 7 is not in names (indices 0..2)" in run.output
