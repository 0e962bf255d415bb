"""A short run on colour squares learns which colours each image holds."""

import pytest
import pytorch_lightning as pl

from cvtasks.registry import DATASETS
from cvtasks.tasks.multilabel import MultilabelTask
from tests.data.multilabel_files import COLOURS, write_colour_set
from tests.tasks.conftest import quiet_trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_lenet5_learns_the_colours_of_each_image(tmp_path):
    pl.seed_everything(0, workers=True)
    csv = write_colour_set(tmp_path, count=120)
    data = DATASETS.build(
        "multilabel_csv",
        root=tmp_path / "images",
        csv=csv,
        image_size=32,
        batch_size=16,
        num_workers=0,
        augment=[],
    )
    assert data.class_names == sorted(COLOURS)
    task = MultilabelTask(
        backbone={"name": "lenet5"},
        num_classes=data.num_classes,
        class_names=data.class_names,
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 3e-3},
    )
    trainer = quiet_trainer(max_epochs=6)
    trainer.fit(task, datamodule=data)
    before = dict(trainer.callback_metrics)
    assert float(before["val/map"]) >= 0.95, before
    trainer.test(task, datamodule=data, verbose=False)
    assert float(trainer.callback_metrics["test/f1_micro"]) >= 0.9
    assert min(task.test_reports["per_class_ap"].values()) >= 0.9
