"""last.ckpt is the last validation's; an equal score moves best.ckpt to the later weights.

With a save every N steps, last.ckpt is written from the first step (before any validation has
scored the weights) and best.ckpt holds the weights of the validated step that chose it.
"""

import os
from datetime import timedelta

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


class Steps(Constant):
    """``Constant`` that records the global step of each training step it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.trained: list[int] = []

    def training_step(self, batch, batch_idx):
        self.trained.append(self.trainer.global_step)
        return super().training_step(batch, batch_idx)


class FailAt(pl.Callback):
    """Raise just before training step ``step`` (a crash no checkpoint is written for)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError(f"failed at step {self.step}")


class WeightsAt(pl.Callback):
    """The model's weights right after training step ``step``."""

    def __init__(self, step):
        self.step, self.weights = step, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            self.weights = {k: v.clone() for k, v in pl_module.state_dict().items()}


def trainer_for(checkpoint, *callbacks, epochs=2, **kwargs):
    return pl.Trainer(
        max_epochs=epochs,
        callbacks=[checkpoint, *callbacks],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def steps_checkpoint(tmp_path, **kwargs):
    """Checkpoints every step (unless ``kwargs`` say otherwise) monitoring ``val/acc``."""
    kwargs = {"every_n_train_steps": 1, "save_last": True, **kwargs}
    return ModelCheckpoint(
        dirpath=tmp_path, filename="best", monitor="val/acc", mode="max", **kwargs
    )


def four_batches():
    return DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=2)


def fail_at_step_2(tmp_path, **kwargs):
    """Train (two epochs of four steps) until it fails at step 2, in epoch 0."""
    data = four_batches()
    trainer = trainer_for(steps_checkpoint(tmp_path, **kwargs), FailAt(2))
    with pytest.raises(RuntimeError, match="failed at step 2"):
        trainer.fit(Steps(), data, data)


def global_steps(folder):
    return {p.name: torch.load(p, weights_only=True)["global_step"] for p in folder.glob("*")}


@pytest.mark.parametrize(
    "due",
    [
        {"every_n_train_steps": 1},
        {"every_n_train_steps": None, "train_time_interval": timedelta(0)},
    ],
    ids=["every_n_train_steps", "train_time_interval"],
)
def test_a_run_failing_before_its_first_validation_resumes_from_the_step_before(tmp_path, due):
    fail_at_step_2(tmp_path, **due)
    assert global_steps(tmp_path) == {"last.ckpt": 2}  # no score yet: no best.ckpt

    data, model = four_batches(), Steps()
    trainer = trainer_for(steps_checkpoint(tmp_path, **due))
    trainer.fit(model, data, data, ckpt_path="last", weights_only=True)
    assert model.trained == [2, 3, 4, 5, 6, 7]  # steps 3 to 8, each once
    assert trainer.global_step == 8
    assert global_steps(tmp_path) == {"last.ckpt": 8, "best.ckpt": 8}


SCHEDULES = {  # the global step of each validation: four steps an epoch, two epochs
    "each_epoch": ({}, [4, 8]),
    "every_2_steps": ({"val_check_interval": 2}, [2, 4, 6, 8]),
    "every_3_steps": ({"val_check_interval": 3}, [3, 7]),  # mid-epoch only
    "every_2_epochs": ({"check_val_every_n_epoch": 2}, [8]),
}


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("on_tie", ["earlier", "later"])
def test_best_holds_the_weights_of_the_validation_that_chose_it(tmp_path, schedule, on_tie):
    # every step is saved before its validation runs; the score ties at every validation: the
    # first validation's step is best with on_tie=earlier, the last one's with on_tie=later
    trainer_args, validated = SCHEDULES[schedule]
    step = validated[0] if on_tie == "earlier" else validated[-1]
    data, weights = four_batches(), WeightsAt(step)
    checkpoint = steps_checkpoint(tmp_path, on_tie=on_tie)
    trainer_for(checkpoint, weights, **trainer_args).fit(Steps(), data, data)
    best = torch.load(tmp_path / "best.ckpt", weights_only=True)
    assert best["global_step"] == step
    assert best["state_dict"].keys() == weights.weights.keys()
    for key, value in weights.weights.items():
        assert torch.equal(best["state_dict"][key], value), key
    # last.ckpt, written after best.ckpt, names it
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    (state,) = [v for k, v in last["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert state["best_model_path"] == str(tmp_path / "best.ckpt")
    assert last["global_step"] == 8


def test_without_save_last_nothing_is_written_before_the_first_validation(tmp_path):
    fail_at_step_2(tmp_path, save_last=False)
    assert list(tmp_path.iterdir()) == []


def test_fast_dev_run_writes_no_early_last(tmp_path):
    # Lightning writes last.ckpt when training ends, even in fast_dev_run: fail before that
    data = four_batches()
    trainer = trainer_for(steps_checkpoint(tmp_path), FailAt(2), fast_dev_run=4)
    with pytest.raises(RuntimeError, match="failed at step 2"):
        trainer.fit(Steps(), data, data)
    assert list(tmp_path.iterdir()) == []


def test_with_gradient_accumulation_each_step_is_written_early_once(tmp_path):
    # two batches a step: batches 1 and 2 both end at step 1; the validation comes at step 2
    data, written = four_batches(), []
    trainer = trainer_for(steps_checkpoint(tmp_path), epochs=1, accumulate_grad_batches=2)
    save = trainer.save_checkpoint

    def recorded_save(path, *args, **kwargs):
        written.append((os.path.basename(path), trainer.global_step))
        return save(path, *args, **kwargs)

    trainer.save_checkpoint = recorded_save
    trainer.fit(Steps(), data, data)
    assert written == [("last.ckpt", 1), ("last.ckpt", 2), ("best.ckpt", 2), ("last.ckpt", 2)]
