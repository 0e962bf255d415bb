"""``train.py task=multilabel``: on the built-in canvases by default, on a label CSV with predict
and evaluate after, and refused on data with one label per image."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY
from tests.conftest import cvtasks_in_process as cvtasks
from tests.data.multilabel_files import COLOURS, write_colour_set

pytestmark = pytest.mark.slow

#: a small written copy of the built-in data: the wiring, not the quality, is under test here
SMALL = ("data.num_train=48", "data.num_val=16", "data.num_test=16", "data.batch_size=8")


def test_train_multilabel_on_the_builtin_data_by_default(run_train):
    run = run_train("task=multilabel", *SMALL, *TINY).check()
    metrics = run.metrics
    assert metrics["monitor"] == "val/map" and metrics["monitor_mode"] == "max"
    for key in ("test/map", "test/f1_micro", "test/f1_macro", "val/map"):
        assert 0.0 <= metrics[key] <= 1.0, key
    per_class = metrics["reports"]["test"]["per_class_ap"]
    assert list(per_class) == [str(d) for d in range(10)]  # the digits, in category order
    config = (run.run_dir / "config.yaml").read_text()
    assert "name: digits_multilabel" in config and "name: multilabel" in config
    assert "name: resnet10" in config  # the default runs on cvtasks' own backbone


@pytest.mark.parametrize(
    ("data", "gives", "task"),
    [
        ("digits", "one label per image", "classification"),
        ("shapes", "a class for every pixel", "segmentation"),
    ],
)
def test_data_with_other_annotations_is_refused_in_one_line(run_train, tmp_path, data, gives, task):
    root = tmp_path / "data-cache"
    run = run_train("task=multilabel", f"data={data}", f"data.root={root}", *TINY)
    assert run.proc.returncode == 2, run.output[-3000:]
    errors = [line for line in run.proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, run.proc.stderr[-3000:]
    assert errors[0].startswith(
        f"error: task=multilabel needs data with a set of labels per image, but data={data} "
        f"gives {gives}: use "
    )
    for fix in ("data=digits_multilabel", "data=multilabel_csv", "data=coco_multilabel"):
        assert fix in errors[0]
    assert errors[0].endswith(f", or task={task} for data={data}")
    assert "Traceback" not in run.proc.stderr and "HYDRA_FULL_ERROR" not in run.proc.stderr
    assert "traceback in" not in errors[0]  # a wrong choice, not a fault to debug
    assert not root.exists() and not (run.run_dir / "checkpoints").exists()  # before any data


def test_train_predict_evaluate_multilabel_from_a_csv(run_train, tmp_path):
    csv = write_colour_set(tmp_path / "colours", count=40)
    images = tmp_path / "colours" / "images"
    data = ("data=multilabel_csv", f"data.root={images}", f"data.csv={csv}", "data.num_workers=0")
    run = run_train("task=multilabel", *data, *TINY).check()
    metrics = run.metrics
    assert metrics["monitor"] == "val/map"
    assert {"test/map", "test/f1_micro", "test/f1_macro", "val/map"} <= set(metrics)
    per_class = metrics["reports"]["test"]["per_class_ap"]
    assert sorted(per_class) == sorted(COLOURS)
    ckpt = run.run_dir / "checkpoints" / "best.ckpt"

    out = tmp_path / "predictions"
    proc = cvtasks("predict", f"ckpt={ckpt}", f"input={images}", f"output={out}", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 40
    for record in records:
        assert len(record["probabilities"]) == 3
        found = [r["probability"] for r in record["labels"]]
        assert all(p > 0.5 for p in found) and found == sorted(found, reverse=True)

    evaluation = tmp_path / "evaluation"
    proc = cvtasks("evaluate", f"ckpt={ckpt}", f"output={evaluation}", *TINY[3:4], cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    evaluated = json.loads((evaluation / "metrics.json").read_text())
    assert evaluated["test/map"] == pytest.approx(metrics["test/map"], abs=1e-6)
    assert (evaluation / "per_class_ap.png").is_file() and (evaluation / "worst.png").is_file()
