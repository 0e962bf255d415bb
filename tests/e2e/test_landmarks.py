"""``python train.py task=landmarks`` end to end, and its config composition."""

import pytest

from tests.conftest import TINY

# A few faces are enough to run every stage; the default dataset is 5,000 images.
SMALL_FACES = ("data.num_train=48", "data.num_val=16", "data.num_test=16", "data.batch_size=16")


def test_task_landmarks_picks_its_defaults_and_the_command_line_wins(compose_train):
    cfg = compose_train("task=landmarks")
    assert cfg.task.name == "landmarks" and cfg.data.name == "synthetic_faces"
    assert cfg.backbone.name == "resnet18" and cfg.trainer.max_epochs == 10
    assert cfg.backbone.channels == [32, 64, 128, 256] and cfg.backbone.out_indices == [1, 2, 3]
    assert cfg.callbacks.model_checkpoint.monitor == "val/nme"
    assert cfg.callbacks.model_checkpoint.mode == "min"
    mine = compose_train("task=landmarks", "data=coco_keypoints", "backbone=lenet5", "trainer=cpu")
    assert mine.data.name == "coco_keypoints" and mine.backbone.name == "lenet5"
    assert mine.trainer.accelerator == "cpu" and mine.trainer.max_epochs == 10
    assert compose_train("task=landmarks", "trainer.max_epochs=3").trainer.max_epochs == 3
    default = compose_train()
    assert default.data.name == "digits" and default.backbone.name == "lenet5"
    assert default.trainer.max_epochs == 70


@pytest.mark.slow
def test_train_landmarks_tiny(run_train):
    run = run_train("task=landmarks", *TINY, *SMALL_FACES).check()
    metrics = run.metrics
    assert metrics["monitor"] == "val/nme" and metrics["monitor_mode"] == "min"
    for key in ("val/nme", "val/pck", "test/nme", "test/pck", "test/loss"):
        assert key in metrics, key
    assert 0.0 <= metrics["test/pck"] <= 1.0 and metrics["test/nme"] > 0
    assert metrics["best_checkpoint"].endswith("best.ckpt")
    assert "test/nme" in run.output
