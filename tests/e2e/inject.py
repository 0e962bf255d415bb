"""Fault injectors for end-to-end tests, added to a run as ``+callbacks.<name>._target_=...``.

Each acts once, at a given global step of training, on every process.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytorch_lightning as pl
import torch


class _AtStep(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = int(step)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step:
            self.act(trainer, batch)

    def act(self, trainer: pl.Trainer, batch: Any) -> None:
        raise NotImplementedError


class KillAt(_AtStep):
    """SIGKILL this process (no handler can run) just before training step ``step``."""

    def act(self, trainer: pl.Trainer, batch: Any) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


class SigtermAt(_AtStep):
    """Send SIGTERM to this process at step ``step`` (as a scheduler preempting the job would)."""

    def act(self, trainer: pl.Trainer, batch: Any) -> None:
        os.kill(os.getpid(), signal.SIGTERM)


class NanAt(_AtStep):
    """Fill this step's images with NaN, so the loss of this one batch is NaN."""

    def act(self, trainer: pl.Trainer, batch: Any) -> None:
        batch["image"].fill_(float("nan"))


class OomAt(_AtStep):
    """Raise the error PyTorch raises when the GPU runs out of memory."""

    def act(self, trainer: pl.Trainer, batch: Any) -> None:
        raise torch.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)"
        )
