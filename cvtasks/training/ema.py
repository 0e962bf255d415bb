"""Weight EMA: an exponential moving average of the weights, validated, saved and resumed.

Lightning's :class:`~pytorch_lightning.callbacks.EMAWeightAveraging` does the work: after each
optimizer step it updates ``ema = decay * ema + (1 - decay) * weights`` (parameters and, with
``use_buffers``, BatchNorm statistics too); it swaps the average in for every validation, writes
it as the checkpoint's ``state_dict`` (the training weights go to ``current_model_state``), puts
it into the model when training ends, and restores both when a run resumes. So ``best.ckpt`` is
chosen by the EMA's validation score, and what the final test, ``predict``, ``evaluate`` and
``export`` load is the EMA model.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EMAWeightAveraging
from pytorch_lightning.strategies import FSDPStrategy


class WeightEMA(EMAWeightAveraging):
    """Lightning's EMA callback, checked and kept on the device the run trains on.

    Sharded training (FSDP) is refused: the average is a whole copy of the model.

    Args:
        decay: weight of the old average at each update, in (0, 1); the average spans about
            ``1 / (1 - decay)`` updates, so pick it well under the run's step count (0.999:
            ~1000 steps; for a run of a few hundred steps, 0.99 or less).
        update_every_n_steps: update after every N-th optimizer step.
        update_starting_at_step: first optimizer step (0-based) that updates the average (its
            first update copies the weights; ``None``: from the first step).
        use_buffers: average BatchNorm statistics as well (else they are the trained model's).
        device: where the average lives (``None``: the device the run trains on; ``"cpu"`` saves
            accelerator memory at the cost of a copy per update).
    """

    def __init__(
        self,
        decay: float = 0.999,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        use_buffers: bool = True,
        device: str | None = None,
    ) -> None:
        if not isinstance(decay, (int, float)) or isinstance(decay, bool) or not 0 < decay < 1:
            raise ValueError(
                f"callbacks.ema.decay={decay!r}: use a number between 0 and 1 (e.g. 0.999; "
                "the average spans about 1 / (1 - decay) steps)"
            )
        if not isinstance(update_every_n_steps, int) or update_every_n_steps < 1:
            raise ValueError(
                f"callbacks.ema.update_every_n_steps={update_every_n_steps!r}: use an integer >= 1"
            )
        if update_starting_at_step is not None and (
            not isinstance(update_starting_at_step, int) or update_starting_at_step < 0
        ):
            raise ValueError(
                f"callbacks.ema.update_starting_at_step={update_starting_at_step!r}: use an "
                "integer >= 0, or null to start at the first step"
            )
        self._swapped = False  # the average is in the model (during validation)
        super().__init__(
            device=device,
            use_buffers=use_buffers,
            decay=float(decay),
            update_every_n_steps=update_every_n_steps,
            update_starting_at_step=update_starting_at_step,
        )
        self.decay = float(decay)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Create the average on the device the run trains on (the module is still on the CPU
        when callbacks are set up, and Lightning would keep the average there)."""
        if isinstance(trainer.strategy, FSDPStrategy):
            raise ValueError(
                "callbacks.ema.enabled=true needs whole weights on every process, and "
                "trainer=fsdp shards them: use trainer=ddp, or turn EMA off"
            )
        if self._device is None:
            self._device = trainer.strategy.root_device
        with warnings.catch_warnings():
            # Lightning warns about any module with a configure_model hook, in case it shards
            # its layers; a task's hook only applies channels-last and compile.
            warnings.filterwarnings("ignore", message=".*doesn't support sharding model layers")
            super().setup(trainer, pl_module, stage)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Swap the average into the model for validation (and note it)."""
        super().on_validation_epoch_start(trainer, pl_module)
        self._swapped = self._average_model is not None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Swap the training weights back."""
        super().on_validation_epoch_end(trainer, pl_module)
        self._swapped = False

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """The average as ``state_dict``, the training weights as ``current_model_state``.

        A checkpoint written during validation (SIGTERM stops a run there) finds the two
        swapped: the model holds the average and the averaged copy the training weights.
        Lightning would save them the wrong way round, and the resumed run would train on.
        """
        if not self._swapped:
            super().on_save_checkpoint(trainer, pl_module, checkpoint)
            return
        assert self._average_model is not None
        prefix = "module."
        state = self._average_model.state_dict()
        checkpoint["current_model_state"] = {
            name[len(prefix) :]: value for name, value in state.items() if name.startswith(prefix)
        }
        checkpoint["averaging_state"] = {
            name: value for name, value in state.items() if not name.startswith(prefix)
        }

    def state_dict(self) -> dict[str, Any]:
        """Lightning's state (the step of the last update) plus the epoch of the last one."""
        return {**super().state_dict(), "latest_update_epoch": self._latest_update_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        super().load_state_dict(state_dict)
        self._latest_update_epoch = int(state_dict.get("latest_update_epoch", -1))
