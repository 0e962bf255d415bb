"""last.ckpt is the last validation's; an equal score moves best.ckpt to the later weights."""

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cvtasks.training.checkpoints import ModelCheckpoint


class Constant(pl.LightningModule):
    """Trains a linear layer; its validation score is the same every epoch (a saturated split)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", 1.0)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tmp_path, epochs, every_n_epochs_val=1, **kwargs):
    data = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path, filename="best", monitor="val/acc", mode="max", save_last=True, **kwargs
    )
    trainer = pl.Trainer(
        max_epochs=epochs,
        callbacks=[checkpoint],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=every_n_epochs_val,
    )
    trainer.fit(Constant(), data, data)
    return {
        name: torch.load(tmp_path / f"{name}.ckpt", weights_only=True)["global_step"]
        for name in ("last", "best")
    }


def test_last_is_written_after_every_validation_and_ties_go_to_the_later_weights(tmp_path):
    steps = fit(tmp_path, epochs=3)
    assert steps == {"last": 6, "best": 6}


def test_earlier_keeps_lightnings_rule_for_best_and_last_is_still_the_last(tmp_path):
    steps = fit(tmp_path, epochs=3, on_tie="earlier")
    assert steps == {"last": 6, "best": 2}


def test_a_step_checkpoint_never_wins_a_tie_with_the_last_validations_score(tmp_path):
    # one validation, after epoch 2 (step 4); step 5 and 6 carry its score but were not validated
    steps = fit(tmp_path, epochs=3, every_n_epochs_val=2, every_n_train_steps=1)
    assert steps == {"last": 6, "best": 4}


def test_a_wrong_tie_rule_names_the_key():
    with pytest.raises(ValueError, match=r"callbacks\.model_checkpoint\.on_tie must be one of"):
        ModelCheckpoint(on_tie="first")
