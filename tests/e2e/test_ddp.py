"""Two CPU processes over gloo: one run folder, one metrics.json, metrics equal to one process."""

import pytest
import pytorch_lightning as pl
import yaml

from cvtasks.cli.build import named
from cvtasks.data import builtin  # noqa: F401  (registers the built-in datasets)
from cvtasks.registry import DATASETS, TASKS
from tests.conftest import TINY

pytestmark = pytest.mark.slow


def one_process_test_metrics(run_dir, checkpoint):
    """The test split evaluated by one process with the DDP run's best checkpoint."""
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


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_ddp_cpu_one_run_folder_and_metrics_equal_one_process(run_train, task):
    run = run_train(
        *TINY,
        f"task={task}",
        "trainer=ddp_cpu",
        "data.num_workers=0",
        "trainer.limit_test_batches=null",  # the whole test split, split over the processes
        timeout=400,
        own_process=True,  # the strategy starts copies of the command
    ).check()
    metrics = run.metrics
    assert metrics["world_size"] == 2
    assert [p.name for p in run.run_dir.parent.iterdir()] == ["run"]  # one folder, both ranks
    assert len(list(run.run_dir.rglob("metrics.json"))) == 1
    assert len(list(run.run_dir.rglob("config.yaml"))) == 2  # ours + Hydra's .hydra/ copy
    assert sorted(p.name for p in (run.run_dir / "checkpoints").iterdir()) == [
        "best.ckpt",
        "last.ckpt",
    ]

    single = one_process_test_metrics(run.run_dir, metrics["best_checkpoint"])
    test_keys = [k for k in metrics if k.startswith("test/") and k != "test/skipped_images"]
    assert test_keys
    for key in test_keys:  # torchmetrics: each test image counted exactly once over 2 processes
        if key != "test/loss":
            assert metrics[key] == pytest.approx(single[key], abs=1e-5), key
    # the logged loss is a mean of per-process means: equal up to the shards' size difference
    assert metrics["test/loss"] == pytest.approx(single["test/loss"], rel=0.02)
