"""Whole train.py runs of the localization task."""

import json

import pytest

from tests.conftest import TINY

pytestmark = pytest.mark.slow

# One intra-op thread: these runs check wiring, and on a shared CPU spinning threads cost minutes.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def test_train_localization_on_the_builtin_data(run_train):
    run = run_train("task=localization", *TINY, env=ONE_THREAD).check()
    metrics = run.metrics
    for split in ("val", "test"):
        for key in ("acc", "miou", "loc_acc"):
            assert 0.0 <= metrics[f"{split}/{key}"] <= 1.0, f"{split}/{key}"
    assert metrics["monitor"] == "val/loc_acc" and metrics["monitor_mode"] == "max"
    assert metrics["best_checkpoint"].endswith("best.ckpt")
    config = (run.run_dir / "config.yaml").read_text()
    assert "name: digits_localization" in config and "name: localization" in config


def test_a_box_outside_its_image_names_the_file_and_field(run_train, tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (50 * i, 0, 0)).save(images / f"{i}.png")
    boxes = [[2, 2, 10, 10], [4, 4, 8, 8], [20, 20, 30, 8], [1, 1, 5, 5]]  # the third passes x=32
    coco = {
        "images": [{"id": i, "file_name": f"{i}.png", "width": 32, "height": 32} for i in range(4)],
        "annotations": [
            {"id": i, "image_id": i, "category_id": 1, "bbox": box} for i, box in enumerate(boxes)
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(coco))
    args = [
        "task=localization",
        "data=coco_boxes",
        f"data.root={images}",
        f"data.annotations={path}",
    ]
    run = run_train(*TINY, *args, "data.image_size=32", env=ONE_THREAD)
    assert run.proc.returncode != 0
    assert f"{path}: annotations[2].bbox" in run.output and "outside" in run.output
