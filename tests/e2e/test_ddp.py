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


# an odd test split: a sampler that padded the shards with a repeated image would change the mAP
# and a threshold under the heatmap's 0.01 prior, so that a model this short-trained finds boxes
SMALL_DETECTION = (
    "data.num_train=48",
    "data.num_val=16",
    "data.num_test=21",
    "task.score_threshold=0.001",
)


@pytest.mark.parametrize(
    ("task", "extra"),
    [("classification", ()), ("segmentation", ()), ("detection", SMALL_DETECTION)],
)
def test_ddp_cpu_one_run_folder_and_metrics_equal_one_process(run_train, task, extra):
    run = run_train(
        *TINY,
        *extra,
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
        if not key.startswith("test/loss"):
            # detection: a barely trained model's scores sit near the prior, and batches of
            # another size move them by float rounding, enough to reorder near-ties
            tolerance = 1e-4 if task == "detection" else 1e-5
            assert metrics[key] == pytest.approx(single[key], abs=tolerance), key
    # a logged loss (or loss term) is a mean of per-process means: equal up to the shards' size
    # difference (wider for detection, whose loss per image follows its number of objects)
    for key in (k for k in test_keys if k.startswith("test/loss")):
        assert metrics[key] == pytest.approx(single[key], rel=0.1 if task == "detection" else 0.02)
    if task == "detection":  # COCO mAP from every test image's boxes, gathered over processes
        assert {"test/map", "test/map50", "test/map75"} <= set(test_keys)
        assert metrics["test/mar100"] > 0  # boxes found: the equality above compared real scores
