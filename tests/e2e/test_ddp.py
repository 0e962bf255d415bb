"""Two CPU processes over gloo: one run folder, one metrics.json, metrics synced."""

import pytest
import torch

from cvtasks.data import builtin  # noqa: F401  (registers digits)
from cvtasks.registry import DATASETS
from cvtasks.tasks.classification import ClassificationTask
from tests.conftest import TINY

pytestmark = pytest.mark.slow


def test_ddp_cpu_one_run_folder_and_synced_metrics(run_train):
    run = run_train(
        *TINY, "trainer=ddp_cpu", "trainer.limit_test_batches=null", timeout=400
    ).check()
    metrics = run.metrics
    assert metrics["world_size"] == 2
    assert len(list(run.run_dir.parent.iterdir())) == 1  # one run folder for both processes
    assert len(list(run.run_dir.rglob("metrics.json"))) == 1
    assert not list(run.run_dir.rglob("*.pr_local_rank*"))

    # The synced test accuracy equals one process evaluating the whole test split.
    datamodule = DATASETS.build("digits", batch_size=64)
    datamodule.prepare_data()
    datamodule.setup("test")
    model = ClassificationTask.load_from_checkpoint(metrics["best_checkpoint"], weights_only=True)
    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for batch in datamodule.test_dataloader():
            correct += int((model(batch["image"]).argmax(1) == batch["label"]).sum())
            total += len(batch["label"])
    # DistributedSampler pads an odd-sized split with one repeated sample: allow that one image.
    assert metrics["test/acc"] == pytest.approx(correct / total, abs=1.0 / total + 1e-6)
