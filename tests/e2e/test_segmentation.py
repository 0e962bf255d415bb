"""Whole ``train.py task=segmentation`` runs in a temporary folder."""

import numpy as np
import pytest
import yaml

from cvtasks.data.masks import write_mask
from tests.conftest import TINY
from tests.data.test_image_masks import write_pair

pytestmark = pytest.mark.slow


def test_segmentation_trains_on_the_builtin_shapes_by_default(run_train):
    run = run_train("task=segmentation", *TINY).check()
    metrics = run.metrics
    for key in (
        "val/miou",
        "val/pixel_acc",
        "val/dice",
        "test/miou",
        "test/pixel_acc",
        "test/dice",
    ):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["monitor"] == "val/miou" and metrics["monitor_mode"] == "max"
    report = metrics["reports"]["test"]
    assert list(report["per_class_iou"]) == ["background", "circle", "rectangle", "triangle"]
    assert sum(map(sum, report["confusion_matrix"]["matrix"])) > 0
    config = yaml.safe_load((run.run_dir / "config.yaml").read_text())
    assert config["data"]["name"] == "shapes" and config["task"]["head"]["name"] == "unet"
    # cvtasks' own narrow ResNet-10 (conf/backbone/resnet10_tiny.yaml)
    assert config["backbone"]["name"] == "resnet10" and config["backbone"]["stem_width"] == 16
    assert (run.run_dir / "checkpoints" / "best.ckpt").is_file()


def test_a_mask_of_the_wrong_size_stops_the_run_and_is_named(run_train, tmp_path):
    root = tmp_path / "data"
    for split in ("train", "val", "test"):
        for i in range(2):
            write_pair(root / split, f"{i}", np.zeros((8, 8), dtype=np.uint8))
    bad = root / "val" / "masks" / "1.png"
    write_mask(bad, np.zeros((8, 9), dtype=np.uint8))
    run = run_train("task=segmentation", "data=image_masks", f"data.root={root}", *TINY)
    assert run.proc.returncode != 0
    assert str(bad) in run.output and "9x8 (WxH) but its image is 8x8" in run.output
