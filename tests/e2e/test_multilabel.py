"""``train.py task=multilabel`` on a label CSV, then predict and evaluate the trained model."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY
from tests.conftest import cvtasks_in_process as cvtasks
from tests.data.multilabel_files import COLOURS, write_colour_set

pytestmark = pytest.mark.slow


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
