"""Whole runs of train.py in a temporary folder."""

import json

import pytest
import yaml

from tests.conftest import TINY

pytestmark = pytest.mark.slow


def test_train_writes_one_complete_run_folder(run_train):
    run = run_train(*TINY, "trainer.max_epochs=2").check()
    files = {p.relative_to(run.run_dir).as_posix() for p in run.run_dir.rglob("*") if p.is_file()}
    assert {
        "config.yaml",
        "metrics.json",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
    } <= files
    assert "csv/metrics.csv" in files
    metrics = run.metrics
    for key in ("val/acc", "val/loss", "val/f1_macro", "test/acc", "test/acc_top5", "test/loss"):
        assert 0.0 <= metrics[key] <= (100 if key.endswith("loss") else 1.0), key
    assert metrics["monitor"] == "val/acc" and metrics["monitor_mode"] == "max"
    assert metrics["best_checkpoint"].endswith("best.ckpt")
    assert metrics["time_s"] > 0 and metrics["versions"]["torch"]
    matrix = metrics["reports"]["test"]["confusion_matrix"]["matrix"]
    assert len(matrix) == 10 and sum(map(sum, matrix)) > 0
    config = yaml.safe_load((run.run_dir / "config.yaml").read_text())
    assert config["backbone"]["name"] == "lenet5" and config["paths"]["output_dir"] == str(
        run.run_dir
    )
    assert "run folder:" in run.output and "test/acc" in run.output


def test_train_resumes_from_a_checkpoint_path(run_train, tmp_path):
    first = run_train(*TINY).check()
    ckpt = first.run_dir / "checkpoints" / "last.ckpt"
    moved = tmp_path / "first.ckpt"
    ckpt.rename(moved)
    second = run_train(*TINY, "trainer.max_epochs=2", f"ckpt_path={moved}").check()
    assert second.metrics["epochs"] == 2
    assert second.metrics["global_step"] == 6  # 3 steps in the resumed epoch on top of 3


def test_multirun_sweep_runs_each_value_and_returns_its_metric(run_train, tmp_path):
    sweep = tmp_path / "sweep"
    run = run_train(
        "-m", *TINY, "task.optimizer.lr=1e-3,1e-2", f"hydra.sweep.dir={sweep}", "logger=none"
    ).check()
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in runs] == ["0", "1"]
    lrs = [yaml.safe_load((p / "config.yaml").read_text())["task"]["optimizer"]["lr"] for p in runs]
    assert lrs == [1e-3, 1e-2]
    for p in runs:
        metrics = json.loads((p / "metrics.json").read_text())
        assert metrics["monitor_value"] == metrics["val/acc"]  # one epoch: the best is the last
    assert run.output.count("run folder:") == 2
