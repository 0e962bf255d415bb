"""Callbacks that make a run resumable and stop it loudly when it goes wrong.

* :class:`RunState` stores every process's RNG states (Python, NumPy, torch, CUDA, the
  albumentations pipelines of the data module) in each checkpoint and restores them on resume,
  so a resumed run draws the same augmentations and dropout masks as an uninterrupted one.
* :class:`NonFiniteLossGuard` stops at the first NaN/Inf loss with a message naming the step and
  batch (the last good checkpoint stays as it was), or skips that batch's update.
* :class:`SaveOnSigterm` writes ``last.ckpt`` when the run is told to stop (SIGTERM: preemption,
  ``scancel``, a Kubernetes eviction) so that ``ckpt_path=last`` picks it up.
"""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

NONFINITE_ACTIONS = ("stop", "skip")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or Inf; the message names the step, epoch and batch."""


# -- RNG state -------------------------------------------------------------------------------
def _pipelines(datamodule: Any) -> dict[str, Any]:
    """The data module's albumentations pipelines (objects with their own RNGs), by attribute."""
    found = {}
    for name, value in sorted(vars(datamodule).items()) if datamodule is not None else []:
        if hasattr(value, "random_generator") and hasattr(value, "py_random"):
            found[name] = value
    return found


def _with_rngs(pipeline: Any) -> list[Any]:
    """The pipeline and each of its transforms, depth first: each may hold its own generators."""
    parts = [pipeline]
    for transform in getattr(pipeline, "transforms", []) or []:
        if hasattr(transform, "random_generator") and hasattr(transform, "py_random"):
            parts.extend(_with_rngs(transform))
    return parts


def collect_rng_states(datamodule: Any = None) -> dict[str, Any]:
    """This process's RNG states, as plain values and tensors (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
        "pipelines": {
            name: [
                (t.random_generator.bit_generator.state, t.py_random.getstate())
                for t in _with_rngs(pipeline)
            ]
            for name, pipeline in _pipelines(datamodule).items()
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_states(state: dict[str, Any], datamodule: Any = None) -> None:
    """Put back what :func:`collect_rng_states` returned."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    pipelines = _pipelines(datamodule)
    for name, states in state.get("pipelines", {}).items():
        parts = _with_rngs(pipelines[name]) if name in pipelines else []
        if len(parts) != len(states):
            log.warning("data pipeline %s changed since the checkpoint: RNG not restored", name)
            continue
        for part, (generator_state, py_state) in zip(parts, states, strict=True):
            part.random_generator.bit_generator.state = generator_state
            part.py_random.setstate(py_state)


class RunState(Callback):
    """Save every process's RNG states in checkpoints; restore them when training resumes.

    Restoring happens at ``on_train_start``, after the sanity validation, so that the first
    resumed batch draws exactly what the uninterrupted run drew there. It also hands the saved
    data-loader positions to the loaders (see :mod:`cvtasks.data.resumable`).
    """

    def __init__(self) -> None:
        self._to_restore: list[dict[str, Any]] | None = None

    def state_dict(self) -> dict[str, Any]:
        """RNG states of every rank (gathered; only rank zero writes the checkpoint)."""
        trainer = getattr(self, "_trainer", None)
        states = collect_rng_states(trainer.datamodule if trainer else None)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, states)
            return {"rng": gathered}
        return {"rng": [states]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the states until training starts."""
        self._to_restore = state_dict.get("rng")

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Remember the trainer (``state_dict`` gets no arguments)."""
        self._trainer = trainer

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Restore the loaders' positions and this rank's RNG states from a resumed checkpoint."""
        # Lightning hands the saved loader states over in FitLoop.setup_data, but that already ran
        # (from estimated_stepping_batches in configure_optimizers) before the checkpoint was
        # restored, so the states would never reach the loaders: hand them over now.
        load_loader_states = getattr(trainer.fit_loop, "_load_combined_loader_states", None)
        if callable(load_loader_states):
            load_loader_states()
        if not self._to_restore:
            return
        if len(self._to_restore) == trainer.world_size:
            restore_rng_states(self._to_restore[trainer.global_rank], trainer.datamodule)
        else:
            log.warning(
                "checkpoint holds RNG states of %d processes, this run has %d: not restoring them",
                len(self._to_restore),
                trainer.world_size,
            )
        self._to_restore = None


# -- non-finite loss ----------------------------------------------------------------------------
class _PendingCheck(NamedTuple):
    """One loss's finiteness, on its way to the host (read after the backward pass is queued)."""

    values: torch.Tensor  # [loss, 1.0 when any rank's loss is non-finite]
    ready: Any  # a CUDA event recorded after the copy, or None on the CPU
    batch_idx: int


def _start_check(loss: torch.Tensor, trainer: pl.Trainer, batch_idx: int) -> _PendingCheck:
    """Queue ``isfinite(loss)``, OR-ed over every rank, and its copy to pinned host memory.

    Nothing here waits for the device: the all-reduce runs on the communication stream (the
    compute stream waits for it, the host does not), and the device-to-host copy is
    ``non_blocking``. Reading the result right away (``float(loss)``) would stall the host until
    the forward pass is done and leave the GPU idle while the backward kernels are launched.
    """
    value = loss.detach().float().reshape(1)
    bad = (~torch.isfinite(value)).float()
    if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
        dist.all_reduce(bad, op=dist.ReduceOp.MAX, async_op=True).wait()
    values = torch.cat([value, bad])
    if values.device.type != "cuda":
        return _PendingCheck(values, None, batch_idx)
    host = values.to("cpu", non_blocking=True)  # lands in pinned memory, asynchronously
    ready = torch.cuda.Event()
    ready.record()
    return _PendingCheck(host, ready, batch_idx)


class NonFiniteLossGuard(Callback):
    """Act on a NaN or Inf training loss before it reaches the weights.

    The check is queued when the loss is computed and read just before the optimizer step, by
    which time the backward pass is already on the GPU: the guard costs no idle device time. A
    non-finite loss on any rank counts on every rank (one NaN poisons the all-reduced gradients).

    Args:
        action: ``"stop"``: raise :class:`NonFiniteLossError` naming global step, epoch and batch
            index, before the optimizer step, so the weights and the checkpoints on disk stay as
            they were; ``"skip"``: drop that step's gradients (every rank together) so the
            optimizer leaves every parameter as it was, count it in ``train/nonfinite_skipped``
            and go on.
    """

    def __init__(self, action: str = "stop") -> None:
        if action not in NONFINITE_ACTIONS:
            raise ValueError(
                f"callbacks.nonfinite_loss.action must be one of {NONFINITE_ACTIONS}, "
                f"got {action!r}"
            )
        self.action = action
        self.skipped = 0
        self._pending: list[_PendingCheck] = []

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        """Queue the check of this (micro-)batch's loss; nothing waits for the device."""
        batch_idx = trainer.fit_loop.epoch_loop.batch_idx
        self._pending.append(_start_check(loss, trainer, batch_idx))

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        """Stop, or drop the gradients (optimizers skip parameters without grads), on a bad loss."""
        pending, self._pending = self._pending, []
        for check in pending:
            if check.ready is not None:
                check.ready.synchronize()  # the forward pass is done by now; the backward runs on
            value, bad = (float(v) for v in check.values)
            if bad:
                self._on_bad_loss(trainer, optimizer, value, check.batch_idx)
                return

    def _on_bad_loss(
        self,
        trainer: pl.Trainer,
        optimizer: torch.optim.Optimizer,
        value: float,
        batch_idx: int,
    ) -> None:
        where = (
            f"global step {trainer.global_step}, epoch {trainer.current_epoch}, "
            f"batch {batch_idx} of the epoch"
        )
        if self.action == "stop":
            last = _last_checkpoint(trainer)
            kept = f"; the last good checkpoint is {last}" if last else ""
            on = f"{value} on rank {trainer.global_rank}" if not math.isfinite(value) else None
            raise NonFiniteLossError(
                f"non-finite training loss ({on or 'on another rank'}) at {where}: stopping "
                f"before it reaches the weights{kept}. Lower task.optimizer.lr, set "
                "trainer.gradient_clip_val, or skip such batches with "
                "callbacks.nonfinite_loss.action=skip."
            )
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.grad = None
        self.skipped += 1
        log.warning("non-finite training loss at %s: skipping this batch's update", where)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log how many batches were skipped so far (``train/nonfinite_skipped``)."""
        if self.action == "skip":
            pl_module.log("train/nonfinite_skipped", float(self.skipped), rank_zero_only=True)

    def state_dict(self) -> dict[str, Any]:
        """The skipped-batch count survives a resume."""
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the skipped-batch count."""
        self.skipped = int(state_dict.get("skipped", 0))


# -- SIGTERM / preemption -----------------------------------------------------------------------
def _last_checkpoint(trainer: pl.Trainer) -> str | None:
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.last_model_path:
            return callback.last_model_path
    return None


def last_checkpoint_path(trainer: pl.Trainer) -> Path:
    """Where ``last.ckpt`` goes: the checkpoint callback's folder, else the run folder's."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            name = callback.CHECKPOINT_NAME_LAST + callback.FILE_EXTENSION
            return Path(callback.dirpath) / name
    return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"


class SaveOnSigterm(Callback):
    """On SIGTERM, write ``checkpoints/last.ckpt`` at the current batch before the run exits.

    Lightning notes the signal and, at the next batch boundary, raises ``SIGTERMException`` on
    every rank together (rank zero broadcasts the flag); this callback saves then, from every
    rank (the checkpoint save is collective; rank zero writes). Under SLURM, Lightning's own
    SIGUSR1 handler also saves and requeues the job (``SLURMEnvironment(auto_requeue=True)``).
    """

    def __init__(self) -> None:
        self.saved_to: Path | None = None

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Save ``last.ckpt`` when the exception is Lightning's response to SIGTERM."""
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return
        path = last_checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        self.saved_to = path
        log.warning("SIGTERM: saved %s; resume with ckpt_path=%s", path, path)
