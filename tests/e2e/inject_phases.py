"""Injectors acting at a phase of a run, not at a training step (`+callbacks.x._target_`)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


def sigterm_self() -> None:
    """What a scheduler preempting the job does."""
    os.kill(os.getpid(), signal.SIGTERM)


class SigtermInTest(pl.Callback):
    """SIGTERM at the first batch of the final test."""

    def on_test_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        sigterm_self()


class SigtermInValidation(pl.Callback):
    """SIGTERM at the first batch of the first validation after the sanity check."""

    def on_validation_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if not trainer.sanity_checking:
            sigterm_self()


class SigtermAfterFit(pl.Callback):
    """SIGTERM once training has ended, before the final test starts."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sigterm_self()


class WaitForFile(pl.Callback):
    """Hold the run at its first training batch until ``path`` exists (at most ``timeout`` s)."""

    def __init__(self, path: str, timeout: float = 120.0) -> None:
        self.path = Path(path)
        self.timeout = timeout

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        (self.path.parent / "waiting").touch()
        deadline = time.monotonic() + self.timeout
        while not self.path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
