"""Whole train.py runs of the detection task on the built-in digits_detection canvases."""

import json

import pytest

from tests.conftest import TINY

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

#: a small written copy of the built-in data: the wiring, not the quality, is under test here
SMALL = ("data.num_train=48", "data.num_val=16", "data.num_test=16", "data.batch_size=8")


def test_train_detection_on_the_builtin_data(run_train):
    run = run_train("task=detection", *SMALL, *TINY).check()
    metrics = run.metrics
    for split in ("val", "test"):
        for key in ("map", "map50", "map75", "mar100"):
            assert 0.0 <= metrics[f"{split}/{key}"] <= 1.0, f"{split}/{key}"
    assert metrics["monitor"] == "val/map50" and metrics["monitor_mode"] == "max"
    written = json.loads((run.run_dir / "metrics.json").read_text())
    per_class = written["reports"]["test"]["ap_per_class"]
    assert list(per_class) == [str(d) for d in range(10)]  # the digits, in category order
    assert {f"test/ap/{name}" for name, ap in per_class.items() if ap is not None} <= set(metrics)
    config = (run.run_dir / "config.yaml").read_text()
    assert "name: digits_detection" in config and "name: detection" in config
    assert "name: resnet10" in config  # the default runs on cvtasks' own backbone
