"""A tiny run on the built-in digits learns: LeNet-5 reaches a clear accuracy in a few epochs."""

import pytorch_lightning as pl

from cvtasks.registry import DATASETS
from cvtasks.tasks.classification import ClassificationTask
from tests.tasks.conftest import quiet_trainer


def test_lenet5_learns_digits_in_a_few_epochs():
    pl.seed_everything(0, workers=True)
    data = DATASETS.build("digits", batch_size=64, augment=[])
    data.prepare_data()
    data.setup("fit")
    task = ClassificationTask(
        backbone={"name": "lenet5"},
        num_classes=data.num_classes,
        class_names=data.class_names,
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-3},
    )
    trainer = quiet_trainer(max_epochs=4)
    trainer.fit(task, datamodule=data)
    val_acc = float(trainer.callback_metrics["val/acc"])
    assert val_acc >= 0.9, f"val/acc {val_acc:.3f} after 4 epochs"
    trainer.test(task, datamodule=data, verbose=False)
    assert float(trainer.callback_metrics["test/acc"]) >= 0.9
