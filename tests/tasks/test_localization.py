"""The localization task: loss, metrics, predictions in pixels, and a short run that learns."""

import pytest
import pytorch_lightning as pl
import torch

from cvtasks.losses.localization import localization_loss
from cvtasks.registry import DATASETS, TASKS
from cvtasks.tasks.localization import LocalizationTask
from tests.tasks.conftest import quiet_trainer
from tests.tasks.test_base import TinyBackbone


def make_task(**kw):
    torch.manual_seed(0)
    return LocalizationTask(backbone=TinyBackbone(), num_classes=3, class_names=list("abc"), **kw)


def batch():
    return {
        "image": torch.randn(4, 3, 16, 16),
        "label": torch.tensor([0, 1, 3, 2]),
        "box": torch.tensor(
            [[0, 0, 0, 0], [0.5, 0.5, 0.2, 0.4], [0.3, 0.3, 0.2, 0.2], [0.7, 0.2, 0.1, 0.3]]
        ).float(),
        "orig_size": torch.tensor([[100, 200], [100, 200], [50, 50], [16, 16]]),
        "index": torch.tensor([7, 8, 9, 10]),
    }


def test_registered_and_monitors_localization_accuracy():
    assert TASKS.get("localization") is LocalizationTask
    assert LocalizationTask.monitor == "val/loc_acc" and LocalizationTask.monitor_mode == "max"


def test_outputs_and_loss_follow_the_seed():
    task = make_task(loss={"gamma": 2.0, "box_loss": "giou"})
    data = batch()
    out = task(data["image"])
    assert out["logits"].shape == (4, 4) and out["box"].shape == (4, 4)
    expected = localization_loss(
        out["logits"], out["box"], data["label"], data["box"], gamma=2.0, box_loss="giou"
    ).total
    torch.testing.assert_close(task.compute_loss(out, data), expected)


def test_metrics_are_acc_miou_and_loc_acc():
    task = make_task()
    data = batch()
    logits = torch.eye(4)[[0, 1, 2, 2]] * 9  # right, right, wrong class, right
    boxes = data["box"].clone()
    boxes[3, 0] += 0.5  # the last image's box is far off
    task.update_metrics(task.test_metrics, {"logits": logits, "box": boxes}, data)
    values = task.test_metrics.compute()
    assert float(values["test/acc"]) == pytest.approx(3 / 4)
    assert float(values["test/miou"]) == pytest.approx(2 / 3, rel=1e-5)  # objects: 1, 1, 0
    assert float(values["test/loc_acc"]) == pytest.approx(2 / 4)


def test_predict_gives_classes_probabilities_and_pixel_boxes():
    task = make_task().eval()
    data = batch()
    logits = torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 0, 5.0], [0, 0, 5.0, 0]])
    results = task.predict_outputs({"logits": logits, "box": data["box"]}, data)
    assert [r["class_name"] for r in results] == ["nothing", "a", "c", "b"]
    assert results[0]["box"] is None
    assert results[0]["p_nothing"] == pytest.approx(float(logits[0].softmax(0)[0]))
    assert results[1]["probability"] == pytest.approx(float(logits[1].softmax(0)[1]))
    # (cx, cy, w, h) = (0.5, 0.5, 0.2, 0.4) of a 200x100 image
    assert results[1]["box"] == pytest.approx([80.0, 30.0, 120.0, 70.0])
    assert results[2]["box"] == pytest.approx([10.0, 10.0, 20.0, 20.0])
    assert [r["index"] for r in results] == [7, 8, 9, 10]


def test_predict_step_without_orig_size_uses_the_input_size():
    task = make_task().eval()
    out = task.predict_step({"image": torch.randn(2, 3, 16, 16)}, 0)
    assert len(out) == 2
    for result in out:
        assert set(result) == {"label", "class_name", "probability", "p_nothing", "box"}
        if result["box"] is not None:
            assert all(0.0 <= v <= 16.0 for v in result["box"])


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="class names"):
        LocalizationTask(backbone=TinyBackbone(), num_classes=3, class_names=["a"])
    with pytest.raises(ValueError, match="box_loss"):
        make_task(loss={"box_loss": "l1"})


def test_a_short_run_on_the_builtin_data_learns_to_localize(one_thread):
    # 20 steps of LeNet-5: boxes improve clearly (mIoU ~0.25 -> ~0.5); the classes need longer.
    pl.seed_everything(0, workers=True)
    data = DATASETS.build("digits_localization", batch_size=64)
    data.prepare_data()
    data.setup("fit")
    task = LocalizationTask(
        backbone={"name": "lenet5"},
        num_classes=data.num_classes,
        loss={"box_loss": "giou"},
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-3},
    )
    trainer = quiet_trainer(
        max_epochs=2, limit_train_batches=10, limit_val_batches=2, num_sanity_val_steps=0
    )
    before = trainer.validate(task, datamodule=data, verbose=False)[0]
    trainer.fit(task, datamodule=data)
    after = trainer.validate(task, datamodule=data, verbose=False)[0]
    assert after["val/miou"] > before["val/miou"] + 0.15, (before, after)
    assert after["val/loss_box"] < 0.75 * before["val/loss_box"], (before, after)
    assert after["val/loc_acc"] > before["val/loc_acc"] + 0.05, (before, after)
