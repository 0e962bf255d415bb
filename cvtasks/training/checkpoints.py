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
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint

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

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Save as Lightning does at an epoch's end, then ``last.ckpt`` if that saved nothing."""
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_missed(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Save as Lightning does after a validation, then ``last.ckpt`` if that saved nothing."""
        if not trainer.sanity_checking:
            self._validated_at = trainer.global_step
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_missed(trainer)

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
