"""Weight EMA in small Lightning runs: what is validated, saved and resumed is the average."""

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from pytorch_lightning.strategies import FSDPStrategy
from torch.utils.data import DataLoader, Dataset

from cvtasks.cli.build import instantiate_group
from cvtasks.config import compose_train
from cvtasks.io import torch_load_safe
from cvtasks.tasks.classification import ClassificationTask
from cvtasks.training.checkpoint_io import AtomicCheckpointIO
from cvtasks.training.ema import WeightEMA
from tests.tasks.test_base import TinyBackbone

DECAY = 0.8


class Bright(Dataset):
    """Class 1: bright images, class 0: dark ones, with noise (a tiny model learns it)."""

    def __init__(self, n: int = 64, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 2, (n,), generator=g)
        self.images = torch.randn(n, 3, 8, 8, generator=g) + (self.labels * 2 - 1).view(-1, 1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "label": self.labels[i]}


def make_task() -> ClassificationTask:
    torch.manual_seed(0)
    return ClassificationTask(
        backbone=TinyBackbone(width=4),
        num_classes=2,
        scheduler={"name": "constant", "warmup_epochs": 0},
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.2},
    )


class Recorder(pl.Callback):
    """The training weights after every optimizer step, and the weights each validation saw."""

    def __init__(self) -> None:
        self.trained: list[dict[str, torch.Tensor]] = []
        self.validated: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.trained.append(params(pl_module))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0 and not trainer.sanity_checking:
            self.validated.append(params(pl_module))


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def ema_of(history: list[dict[str, torch.Tensor]], decay: float) -> dict[str, torch.Tensor]:
    """The oracle: the first update copies the weights, each later one mixes them in."""
    average = dict(history[0])
    for weights in history[1:]:
        average = {k: decay * average[k] + (1 - decay) * weights[k] for k in average}
    return average


def fit(module, callbacks, root, max_epochs, ckpt_path=None):
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        max_epochs=max_epochs,
        default_root_dir=root,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
    )
    data = DataLoader(Bright(), batch_size=16)
    val = DataLoader(Bright(32, seed=1), batch_size=32)
    trainer.fit(module, data, val, ckpt_path=ckpt_path, weights_only=True)
    return trainer


def assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def test_validation_and_checkpoint_hold_the_average_of_the_trained_weights(tmp_path):
    module, recorder = make_task(), Recorder()
    trainer = fit(module, [recorder, WeightEMA(decay=DECAY)], tmp_path, max_epochs=3)
    steps_per_epoch = 4
    assert len(recorder.trained) == 3 * steps_per_epoch
    for epoch, seen in enumerate(recorder.validated):  # validation ran on the EMA weights
        assert_same(seen, ema_of(recorder.trained[: (epoch + 1) * steps_per_epoch], DECAY))
    final = ema_of(recorder.trained, DECAY)
    head = "net.head.layers.3.weight"  # the classifier's linear layer
    assert not torch.allclose(final[head], recorder.trained[-1][head])  # an average, not the last
    assert_same(params(module), final)  # training ends with the average in the model

    trainer.save_checkpoint(tmp_path / "end.ckpt")  # written as ModelCheckpoint writes
    saved = torch_load_safe(tmp_path / "end.ckpt")
    assert_same({k: saved["state_dict"][k] for k in final}, final)
    # what predict/evaluate/export load: the state_dict, i.e. the average
    loaded = ClassificationTask.load_from_checkpoint(
        tmp_path / "end.ckpt", backbone=TinyBackbone(width=4), weights_only=True
    )
    assert_same(params(loaded), final)
    # and it learned: the averaged model sorts bright from dark
    batch = Bright(32, seed=1)[:]
    with torch.no_grad():
        accuracy = (loaded.eval()(batch["image"]).argmax(1) == batch["label"]).float().mean()
    assert accuracy >= 0.9


class SaveAfterEpochOne(pl.Callback):
    """Write ``mid.ckpt`` at the end of the second epoch, as a checkpoint callback would."""

    def __init__(self, folder) -> None:
        self.path = folder / "mid.ckpt"

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            trainer.save_checkpoint(self.path)


def test_checkpoint_written_mid_run_holds_the_average_and_the_training_weights(tmp_path):
    recorder, save = Recorder(), SaveAfterEpochOne(tmp_path)
    fit(make_task(), [recorder, WeightEMA(decay=DECAY), save], tmp_path, 3)
    saved = torch_load_safe(save.path)
    expected = ema_of(recorder.trained[:8], DECAY)
    assert_same({k: saved["state_dict"][k] for k in expected}, expected)
    assert_same({k: saved["current_model_state"][k] for k in expected}, recorder.trained[7])
    assert int(saved["averaging_state"]["n_averaged"]) == 8


def test_checkpoint_written_during_validation_keeps_average_and_training_weights_apart(tmp_path):
    """A checkpoint written mid-validation (SIGTERM there) while the average is swapped in."""

    class SaveInValidation(pl.Callback):
        def on_validation_batch_end(self, trainer, pl_module, *args, **kwargs):
            if trainer.current_epoch == 1:
                trainer.save_checkpoint(tmp_path / "in_val.ckpt")

    recorder = Recorder()
    fit(make_task(), [recorder, WeightEMA(decay=DECAY), SaveInValidation()], tmp_path, 2)
    saved = torch_load_safe(tmp_path / "in_val.ckpt")
    expected = ema_of(recorder.trained, DECAY)
    assert_same({k: saved["state_dict"][k] for k in expected}, expected)
    assert_same({k: saved["current_model_state"][k] for k in expected}, recorder.trained[-1])
    assert int(saved["averaging_state"]["n_averaged"]) == 8


def test_resume_keeps_the_average(tmp_path):
    """Four epochs in one go, and two more from the checkpoint of the second: the same average."""
    whole, save = make_task(), SaveAfterEpochOne(tmp_path)
    fit(whole, [WeightEMA(decay=DECAY), save], tmp_path / "whole", max_epochs=4)
    resumed, ema = make_task(), WeightEMA(decay=DECAY)
    fit(resumed, [ema], tmp_path / "resumed", max_epochs=4, ckpt_path=save.path)
    assert int(ema._average_model.n_averaged) == 16  # 8 before the checkpoint, 8 after
    assert_same(params(resumed), params(whole))
    # without the saved average, the resumed run would restart it from the training weights
    fresh = make_task()
    fresh.load_state_dict(torch_load_safe(save.path)["current_model_state"])
    fit(fresh, [WeightEMA(decay=DECAY)], tmp_path / "fresh", max_epochs=2)
    head = "net.head.layers.3.weight"
    assert not torch.allclose(params(fresh)[head], params(whole)[head])


def test_the_switch_is_off_by_default_and_its_values_are_checked():
    def built(overrides=()):
        node = compose_train(list(overrides)).callbacks.ema  # alone: the rest needs a run folder
        return instantiate_group(OmegaConf.create({"ema": node}))

    assert built() == []
    (ema,) = built(["callbacks.ema.enabled=true", "callbacks.ema.decay=0.99"])
    assert isinstance(ema, WeightEMA) and ema.decay == 0.99
    with pytest.raises(ValueError, match=r"callbacks\.ema\.decay=1\.5: use a number between 0"):
        WeightEMA(decay=1.5)
    with pytest.raises(ValueError, match=r"callbacks\.ema\.update_every_n_steps=0: use an int"):
        WeightEMA(update_every_n_steps=0)


def test_sharded_training_is_refused_with_the_fix():
    trainer = SimpleNamespace(strategy=FSDPStrategy.__new__(FSDPStrategy))
    with pytest.raises(ValueError, match=r"callbacks\.ema\.enabled=true .* use trainer=ddp"):
        WeightEMA().setup(trainer, make_task(), "fit")
