"""The training progress bar, without a host-device synchronization after every batch."""

from __future__ import annotations

import math
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar


class ProgressBar(RichProgressBar):
    """Lightning's Rich progress bar, reading the logged metrics at most every few seconds.

    Showing a metric copies it from the device, which waits for all the work queued so far.
    Lightning's Rich bar reads them after every training batch, so on a GPU each step ends with
    the device idle while the host prepares and launches the next one. This bar still advances
    every batch but reads the metrics (``train/loss``, ...) only when ``metrics_every_s`` seconds
    have passed since the last read, and always at the end of an epoch and of a validation.

    Args:
        metrics_every_s: seconds between reads of the logged metrics; 0 reads after every batch.
        **kwargs: ``RichProgressBar``'s (``refresh_rate``, ``leave``, ``theme``,
            ``console_kwargs``).
    """

    def __init__(self, metrics_every_s: float = 0.5, **kwargs: Any) -> None:
        if not metrics_every_s >= 0:
            raise ValueError(
                f"callbacks.progress_bar.metrics_every_s must be >= 0, got {metrics_every_s!r}"
            )
        super().__init__(**kwargs)
        self.metrics_every_s = float(metrics_every_s)
        self.reads = 0
        self._metrics: dict[str, Any] | None = None
        self._read_at = -math.inf

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        """The metrics to show: read afresh when due, else the ones read last."""
        now = time.monotonic()
        if self._metrics is None or now - self._read_at >= self.metrics_every_s:
            self._metrics = super().get_metrics(trainer, pl_module)
            self._read_at = now
            self.reads += 1
        return self._metrics

    def _read_next_time(self) -> None:
        self._read_at = -math.inf

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Show the epoch's final values."""
        self._read_next_time()
        super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Show the validation results."""
        self._read_next_time()
        super().on_validation_end(trainer, pl_module)
