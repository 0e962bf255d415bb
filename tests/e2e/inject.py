"""Helpers that end-to-end tests add to a ``train.py`` run from the command line.

Fault injectors, added as ``+callbacks.<name>._target_=tests.e2e.inject.KillAt`` (and
``+callbacks.<name>.step=N``), each act once, at a given global step of training, on every
process. :class:`RecordReturn`, a Hydra callback (``+hydra.callbacks.record._target_=...``),
writes down what each job returned to Hydra (to its sweeper, in a multirun); :class:`RecordLosses`
writes down every training step's loss, :class:`RecordLabels` the labels each step trained on.
"""

from __future__ import annotations

import json
import os
import signal
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig


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


def _append_line(path: Path, line: dict[str, Any]) -> None:
    """Append one JSON line to ``path``, on disk (``fsync``) before returning."""
    with path.open("a") as f:
        f.write(json.dumps(line) + "\n")
        f.flush()
        os.fsync(f.fileno())


class _RecordSteps(pl.Callback, ABC):
    """Append a JSON line per training step (``step``, ``epoch``, ``batch`` and what
    :meth:`fields` gives) to a file, on disk (``fsync``) before the next step starts, so a run
    killed later keeps every line of the steps it finished; a resumed run appends to it."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    @abstractmethod
    def fields(self, outputs: Any, batch: Any) -> dict[str, Any] | None:
        """What this step's line records; ``None``: no line."""

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Write down this step's line."""
        fields = self.fields(outputs, batch)
        if fields is None:
            return
        line = {
            "step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "batch": batch_idx,
            **fields,
        }
        _append_line(self.path, line)


class RecordLosses(_RecordSteps):
    """Each training step's ``loss``, ``step`` being the global step after that batch's
    optimizer step; a skipped batch writes no line."""

    def fields(self, outputs: Any, batch: Any) -> dict[str, Any] | None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        return None if loss is None else {"loss": float(loss)}


class RecordLabels(_RecordSteps):
    """The ``labels`` of each training batch (its ``label`` tensor as a list)."""

    def fields(self, outputs: Any, batch: Any) -> dict[str, Any] | None:
        return {"labels": batch["label"].tolist()}


def at_step(name: str, step: int) -> list[str]:
    """``train.py`` overrides adding the fault injector ``name`` (a class here) at ``step``."""
    return [f"+callbacks.inject._target_=tests.e2e.inject.{name}", f"+callbacks.inject.step={step}"]


#: the file :class:`RecordReturn` writes into each job's output folder
RETURNED = "returned.json"


class RecordReturn(HydraCallback):
    """Write each job's return value (``train()``'s monitored metric) to ``returned.json``."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """Record the value the launcher hands back to the sweeper."""
        done = job_return.status == JobStatus.COMPLETED
        value = job_return.return_value if done else None
        path = Path(config.hydra.runtime.output_dir) / RETURNED
        path.write_text(json.dumps({"completed": done, "return_value": value}))
