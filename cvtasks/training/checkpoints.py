"""Which checkpoints a run keeps: ``last.ckpt`` that is really the last, ``best.ckpt`` on ties.

Lightning's ``ModelCheckpoint`` (2.6) writes ``last.ckpt`` at the end of a validation only when
it also saved a top-k checkpoint at that step. With ``save_top_k=1`` that means only when the
monitored metric improved: after the last improvement ``last.ckpt`` stops moving, so a run killed
or preempted later resumes from the last improvement and trains those epochs again (and a run
resumed only to finish its final test trains them again too). :class:`ModelCheckpoint` writes it
after every validation.

On a tie Lightning keeps the earlier checkpoint. A small validation set saturates (every digit of
the built-in validation split right after a few epochs), and the test then scores weights from
early in training; ``on_tie="later"`` lets an equal score replace the best, so the test scores the
latest of the equally good weights.

With ``every_n_train_steps`` (or ``train_time_interval``) Lightning holds every step save back,
``last.ckpt`` included, until a validation has logged the monitored metric: a run killed in its
first epoch left nothing to resume from. Such a save writes ``last.ckpt`` at once instead (there
is no score to rank a top-k checkpoint by yet), and a validation at the same step still writes
``best.ckpt``: the early save leaves Lightning's record of the last saved step as it was, and the
held-back top-k save is made at the epoch's end when checkpoints are saved there (Lightning makes
it only at the end of a validation, where it saves nothing in that case). A step saved just before
a validation (the epoch's last, or at ``val_check_interval``) is ranked with the previous
validation's score, after which Lightning saves nothing more at that step; it is ranked again with
its own score, so every validated step can become ``best.ckpt``.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint
from pytorch_lightning.utilities.types import STEP_OUTPUT

ON_TIE = ("later", "earlier")


class ModelCheckpoint(LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` with ``last.ckpt`` after every validation and a tie rule.

    Args:
        on_tie: ``"later"``: a monitored value equal to the worst kept one replaces it;
            ``"earlier"``: Lightning's rule, the first checkpoint reaching a value stays.
        *args: Lightning's ``ModelCheckpoint`` arguments.
        **kwargs: Lightning's ``ModelCheckpoint`` keyword arguments.
    """

    def __init__(self, *args: Any, on_tie: str = "later", **kwargs: Any) -> None:
        if on_tie not in ON_TIE:
            raise ValueError(
                f"callbacks.model_checkpoint.on_tie must be one of {ON_TIE}, got {on_tie!r}"
            )
        super().__init__(*args, **kwargs)
        self.on_tie = on_tie
        self._validated_at: int | None = None  # the global step of the latest validation
        self._early_last_at: int | None = None  # the global step of the latest early last.ckpt
        self._step_saved_at: int | None = None  # the latest step save, ranked by an older score

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: STEP_OUTPUT,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Save as Lightning does every N steps, and ``last.ckpt`` where it holds a save back.

        Lightning holds a due step (or time) save back while the monitored metric is missing
        (before the first validation) and when a validation follows this batch. Only the first
        leaves the run without a checkpoint for a while, so only then ``last.ckpt`` is written.
        """
        held_before, saved_before = self._defer_save_until_validation, self._last_global_step_saved
        self._defer_save_until_validation = False  # to see whether this batch's save is held back
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self._last_global_step_saved == trainer.global_step != saved_before:
            self._step_saved_at = trainer.global_step
        held_now = self._defer_save_until_validation
        self._defer_save_until_validation = held_before or held_now
        if held_now and self.monitor not in self._monitor_candidates(trainer):
            self._save_early_last(trainer)

    def _save_early_last(self, trainer: pl.Trainer) -> None:
        """``last.ckpt`` now, leaving the record of the last saved step and file as it was."""
        # the skip conditions are Lightning's (sanity check, fast_dev_run, a step saved already);
        # with gradient accumulation several batches end at one global step: write it once
        if (
            not self.save_last
            or self._should_skip_saving_checkpoint(trainer)
            or self._early_last_at == trainer.global_step
        ):
            return
        saved_step, saved_file = self._last_global_step_saved, self._last_checkpoint_saved
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._early_last_at = trainer.global_step
        # a validation right after this batch skips every save at a step already saved: restored,
        # it still writes best.ckpt (and, save_last="link", links last.ckpt to that, not itself)
        self._last_global_step_saved, self._last_checkpoint_saved = saved_step, saved_file

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Save as Lightning does at an epoch's end, then ``last.ckpt`` if that saved nothing.

        A step save held back for a validation that has run at this step is made here when
        checkpoints are saved at the epoch's end: Lightning makes it only after a validation.
        One held back for a validation that did not come writes ``last.ckpt``.
        """
        if self._save_held_back(trainer):
            return
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_missed(trainer)
            self._rank_validated_step(trainer)
        elif self._defer_save_until_validation and self._validated_at != trainer.global_step:
            # held back for a validation after the epoch's last batch that did not run
            # (val_check_interval mid-epoch only): the step is not lost
            self._save_early_last(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Save as Lightning does after a validation, then ``last.ckpt`` if that saved nothing."""
        if not trainer.sanity_checking:
            self._validated_at = trainer.global_step
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_missed(trainer)
            self._rank_validated_step(trainer)

    def _save_held_back(self, trainer: pl.Trainer) -> bool:
        """Top-k and ``last.ckpt`` for a step save held back until this step's validation."""
        if (
            not self._defer_save_until_validation
            or self._validated_at != trainer.global_step
            or not self._should_save_on_train_epoch_end(trainer)
            or self._should_skip_saving_checkpoint(trainer)
        ):
            return False
        candidates = self._monitor_candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)
        self._defer_save_until_validation = False
        return True

    def _rank_validated_step(self, trainer: pl.Trainer) -> None:
        """Rank a step saved just before its validation again, by the score it has now.

        The step save ranked the previous validation's score, and Lightning then saves nothing
        more at that step: without this, the weights of a step that ends an epoch (or meets
        ``val_check_interval``) could never become ``best.ckpt`` with ``every_n_train_steps``.
        """
        step = trainer.global_step
        if self._step_saved_at != step or self._validated_at != step:
            return
        self._step_saved_at = None
        kept = dict(self.best_k_models)
        candidates = self._monitor_candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        if self.best_k_models != kept:  # last.ckpt records the best: keep it up to date
            self._save_last_checkpoint(trainer, candidates)

    def _save_last_if_missed(self, trainer: pl.Trainer) -> None:
        # the skip check is also true for a step saved already: each step is written once
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def check_monitor_top_k(self, trainer: pl.Trainer, current: torch.Tensor | None = None) -> bool:
        """Lightning's decision, except that with ``on_tie="later"`` an equal value counts.

        Only a value measured at this step counts so: a checkpoint written between validations
        (``every_n_train_steps``) carries the last validation's value, which says nothing of its
        own weights.
        """
        kept = self.best_k_models.get(self.kth_best_model_path)
        if (
            self.on_tie == "earlier"
            or self._validated_at != trainer.global_step
            or current is None
            or kept is None
            or self.save_top_k == -1
            or len(self.best_k_models) < self.save_top_k
        ):
            return super().check_monitor_top_k(trainer, current)
        at_least = {"min": torch.le, "max": torch.ge}[self.mode](current, kept)
        return trainer.strategy.reduce_boolean_decision(bool(at_least))
