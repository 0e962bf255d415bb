"""The CSV logger keeps the history it continues: nothing is deleted when a run resumes."""

import csv
from pathlib import Path

from cvtasks.training.loggers import CSVLogger


def rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def log(save_dir, *steps):
    logger = CSVLogger(save_dir=save_dir, name="csv", version="")
    for step, metrics in steps:
        logger.log_metrics(metrics, step=step)
    logger.save()
    return logger


def test_a_resumed_logger_appends_after_the_old_rows(tmp_path):
    first = log(tmp_path, (0, {"train/loss": 2.0}), (1, {"train/loss": 1.5}))
    path = first.experiment.metrics_file_path
    log(tmp_path, (2, {"train/loss": 1.0}))
    assert [(r["step"], r["train/loss"]) for r in rows(path)] == [
        ("0", "2.0"),
        ("1", "1.5"),
        ("2", "1.0"),
    ]


def test_new_metrics_widen_the_header_and_keep_every_old_value(tmp_path):
    first = log(tmp_path, (0, {"train/loss": 2.0}))
    path = first.experiment.metrics_file_path
    log(tmp_path, (5, {"train/loss": 1.0, "val/acc": 0.5}))
    table = rows(path)
    assert list(table[0]) == ["step", "train/loss", "val/acc"]
    assert [(r["step"], r["train/loss"], r["val/acc"]) for r in table] == [
        ("0", "2.0", ""),
        ("5", "1.0", "0.5"),
    ]
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_resume_that_fails_before_logging_leaves_the_history_whole(tmp_path):
    first = log(tmp_path, (0, {"train/loss": 2.0}), (1, {"train/loss": 1.5}))
    path = first.experiment.metrics_file_path
    before = Path(path).read_text()
    resumed = CSVLogger(save_dir=tmp_path, name="csv", version="")
    resumed.log_hyperparams({"lr": 0.1})  # what Lightning does first when a run starts
    assert Path(path).read_text() == before


def test_rows_are_on_disk_when_a_checkpoint_is_saved(tmp_path):
    logger = CSVLogger(save_dir=tmp_path, name="csv", version="")  # flushes every 100 steps
    logger.log_metrics({"train/loss": 2.0}, step=0)
    assert not (tmp_path / "csv" / "metrics.csv").exists()
    logger.after_save_checkpoint(checkpoint_callback=None)
    assert [r["train/loss"] for r in rows(tmp_path / "csv" / "metrics.csv")] == ["2.0"]
