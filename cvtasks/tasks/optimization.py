"""The optimizer and learning-rate schedule of every task, from its config.

:class:`OptimizationHooks` is a base of :class:`~cvtasks.tasks.base.TaskModule`: parameter
groups (weight decay on weights only, the backbone's rate scaled for fine-tuning) and Lightning's
``configure_optimizers`` (the Hydra partial optimizer, per-step warmup then a cosine, step or
constant decay: :func:`lr_schedule`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from hydra.utils import get_class, instantiate

from cvtasks.tasks import transfer
from cvtasks.training import speed

SCHEDULERS = ("cosine", "step", "constant")

DEFAULT_OPTIMIZER: dict[str, Any] = {
    "_target_": "torch.optim.AdamW",
    "_partial_": True,
    "lr": 1e-3,
    "weight_decay": 0.05,
}
DEFAULT_SCHEDULER: dict[str, Any] = {"name": "cosine", "warmup_epochs": 0.0, "min_lr_ratio": 0.0}


class OptimizationHooks:
    """Optimizer and schedule hooks; the task sets ``net``, ``optimizer_cfg``,
    ``scheduler_cfg``, ``transfer`` and ``run_device``, and Lightning sets ``trainer``."""

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Weight decay on weights only: biases and norm scales (1-D tensors) are exempt.

        Parameters frozen for the whole run (``freeze_bn``) are left out; with
        ``backbone_lr_scale`` each group is split in a backbone part at the scaled rate and the
        rest (see :func:`~cvtasks.tasks.transfer.scaled_groups`).
        """
        decay, no_decay = [], []
        for param in self.net.parameters():
            if param.requires_grad:
                (no_decay if param.ndim <= 1 else decay).append(param)
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        scale = self.transfer.backbone_lr_scale
        if scale == 1.0:
            return groups
        lr = float(self.optimizer_cfg.get("lr", DEFAULT_OPTIMIZER["lr"]))
        return transfer.scaled_groups(groups, self.net.backbone, lr, scale)

    def configure_optimizers(self) -> dict[str, Any]:
        """Optimizer from the Hydra partial config; per-step warmup + cosine/step/constant."""
        cfg = dict(self.optimizer_cfg)
        weight_decay = float(cfg.pop("weight_decay", 0.0))
        speed.add_fused(cfg, get_class(cfg["_target_"]), self.run_device)
        if self.transfer.active:  # the optimizer holds every parameter that learns at some epoch
            epoch = self.transfer.freeze_backbone_epochs
            transfer.set_backbone_trainable(self.net.backbone, self.transfer, epoch)
        optimizer = instantiate(cfg)(self.parameter_groups(weight_decay))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, self.trainer.max_epochs or 1)
        schedule = lr_schedule(
            self.scheduler_cfg, total_steps=total, steps_per_epoch=total / epochs
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def lr_schedule(
    cfg: Mapping[str, Any], total_steps: int, steps_per_epoch: float
) -> Callable[[int], float]:
    """Learning-rate multiplier per optimizer step: linear warmup, then the named decay.

    Args:
        cfg: ``name`` (cosine | step | constant), ``warmup_epochs``, and for cosine
            ``min_lr_ratio``; for step ``step_epochs`` and ``gamma``.
        total_steps: optimizer steps in the whole run.
        steps_per_epoch: optimizer steps per epoch (may be fractional with accumulation).
    """
    warmup = round(float(cfg.get("warmup_epochs", 0.0)) * steps_per_epoch)
    name = cfg.get("name", "cosine")
    min_ratio = float(cfg.get("min_lr_ratio", 0.0))
    step_size = max(1, round(float(cfg.get("step_epochs", 10)) * steps_per_epoch))
    gamma = float(cfg.get("gamma", 0.1))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if name == "cosine":
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if name == "step":
            return gamma ** ((step - warmup) // step_size)
        return 1.0

    return factor
