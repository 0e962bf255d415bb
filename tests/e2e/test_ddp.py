"""Two CPU processes over gloo: one run folder, one metrics.json, metrics equal to one process."""

import pytest

from tests.conftest import TINY
from tests.e2e.distributed import assert_test_metrics_equal, one_process_test_metrics

pytestmark = pytest.mark.slow


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
    assert_test_metrics_equal(metrics, single, task)
    if task == "detection":  # COCO mAP from every test image's boxes, gathered over processes
        assert {"test/map", "test/map50", "test/map75"} <= set(metrics)
        assert metrics["test/mar100"] > 0  # boxes found: the equality above compared real scores
