"""The non-finite loss guard and the progress bar, in small Lightning runs."""

import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cvtasks.training.callbacks import NonFiniteLossError, NonFiniteLossGuard
from cvtasks.training.progress import ProgressBar


class Regression(pl.LightningModule):
    """A linear model whose loss is NaN on the listed (epoch-relative) batches."""

    def __init__(self, nan_batches=(), log_loss=False):
        super().__init__()
        self.net = nn.Linear(4, 1)
        self.nan_batches = set(nan_batches)
        self.log_loss = log_loss
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        if batch_idx in self.nan_batches:
            loss = loss * float("nan")
        if self.log_loss:
            self.log("train/loss", loss, on_step=True, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.seen.append(self.net.weight.detach().clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


class BackwardLog(pl.Callback):
    """The batch index of every backward pass that ran."""

    def __init__(self):
        self.batches = []

    def on_after_backward(self, trainer, pl_module):
        self.batches.append(trainer.fit_loop.epoch_loop.batch_idx)


def loader(batches=6):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batches * 4, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


def fit(module, callbacks, **kwargs):
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=callbacks,
        **{"enable_progress_bar": False, "max_epochs": 1, **kwargs},
    )
    trainer.fit(module, loader())
    return trainer


def test_the_loss_is_read_after_the_backward_pass_is_queued():
    """on_before_backward only queues the check; the verdict comes before the optimizer step."""
    guard, backward = NonFiniteLossGuard("stop"), BackwardLog()
    module = Regression(nan_batches={2})
    with pytest.raises(NonFiniteLossError, match=r"\(nan on rank 0\) at global step 2, epoch 0"):
        fit(module, [guard, backward])
    assert backward.batches == [0, 1, 2]  # the bad batch's backward was queued, not waited for
    assert len(module.seen) == 2  # two good steps, then the stop
    torch.testing.assert_close(module.net.weight.detach(), module.seen[-1])  # weights untouched
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_skip_drops_the_whole_accumulated_step_and_names_the_bad_micro_batch(caplog):
    guard = NonFiniteLossGuard("skip")
    module = Regression(nan_batches={2})  # the first micro-batch of the second step
    fit(module, [guard], accumulate_grad_batches=2)
    assert guard.skipped == 1
    assert "global step 1, epoch 0, batch 2 of the epoch" in caplog.text
    # batches 0-1: a step; 2-3: skipped (weights as after step 1); 4-5: a step
    torch.testing.assert_close(module.seen[3], module.seen[1])
    assert not torch.equal(module.seen[5], module.seen[3])
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_a_finite_run_is_left_alone():
    guard = NonFiniteLossGuard("stop")
    plain, guarded = Regression(), Regression()
    guarded.load_state_dict(plain.state_dict())
    fit(plain, [])
    fit(guarded, [guard])
    torch.testing.assert_close(guarded.net.weight, plain.net.weight)
    assert guard.skipped == 0 and guard._pending == []


def test_guard_rejects_an_unknown_action():
    with pytest.raises(ValueError, match=r"callbacks\.nonfinite_loss\.action must be one of"):
        NonFiniteLossGuard("ignore")


@pytest.mark.parametrize(("every_s", "most_reads"), [(0.0, None), (3600.0, 4)])
def test_progress_bar_reads_metrics_only_when_due(every_s, most_reads):
    bar = ProgressBar(metrics_every_s=every_s)
    trainer = fit(Regression(log_loss=True), [bar], enable_progress_bar=True, max_epochs=2)
    batches = 2 * 6
    if most_reads is None:  # every batch, as Lightning's own bar
        assert bar.reads >= batches
    else:  # the first batch and each epoch's end
        assert bar.reads <= most_reads
    shown = bar.get_metrics(trainer, trainer.lightning_module)["train/loss"]
    assert math.isfinite(shown)


def test_progress_bar_rejects_a_negative_interval():
    with pytest.raises(ValueError, match="metrics_every_s must be >= 0"):
        ProgressBar(metrics_every_s=-1)
