"""Helpers of the task tests, imported as ``from tests.tasks.conftest import quiet_trainer``."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


def quiet_trainer(**kwargs: Any) -> pl.Trainer:
    """A CPU ``pl.Trainer`` that writes and prints nothing: no logger, checkpoints or bars.

    Args:
        **kwargs: other ``pl.Trainer`` options (``max_epochs``, ``limit_train_batches``, ...);
            they may also override the quiet defaults.
    """
    options = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return pl.Trainer(**{**options, **kwargs})
