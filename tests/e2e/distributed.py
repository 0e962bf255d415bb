"""What the end-to-end tests of runs over several processes compare a run's metrics with."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import yaml

from cvtasks.cli.build import named
from cvtasks.data import builtin  # noqa: F401  (registers the built-in datasets)
from cvtasks.registry import DATASETS, TASKS


def one_process_test_metrics(run_dir: Path, checkpoint: str) -> dict[str, float]:
    """The test split evaluated by one process with a distributed run's best checkpoint."""
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    name, kwargs = named(cfg["data"], "data")
    datamodule = DATASETS.build(name, **{**kwargs, "num_workers": 0})
    datamodule.prepare_data()
    model = TASKS.get(cfg["task"]["name"]).load_from_checkpoint(checkpoint, weights_only=True)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_test_batches=cfg["trainer"]["limit_test_batches"],
    )
    (metrics,) = trainer.test(model, datamodule=datamodule, verbose=False)
    return metrics


def assert_test_metrics_equal(metrics: dict, single: dict, task: str) -> None:
    """A distributed run's test metrics (``metrics.json``) equal one process's (``single``).

    torchmetrics count each test image exactly once over the processes, so the metrics match to
    float rounding; a logged loss (or loss term) is a mean of per-process means, equal up to the
    shards' size difference.
    """
    test_keys = [k for k in metrics if k.startswith("test/") and k != "test/skipped_images"]
    assert test_keys
    for key in test_keys:
        if not key.startswith("test/loss"):
            # detection: a barely trained model's scores sit near the prior, and batches of
            # another size move them by float rounding, enough to reorder near-ties
            tolerance = 1e-4 if task == "detection" else 1e-5
            assert metrics[key] == pytest.approx(single[key], abs=tolerance), key
    # wider for detection, whose loss per image follows its number of objects
    for key in (k for k in test_keys if k.startswith("test/loss")):
        assert metrics[key] == pytest.approx(single[key], rel=0.1 if task == "detection" else 0.02)
