"""Transfer-learning switches of a task: train the head first, a slower backbone, fixed BatchNorm.

* ``freeze_backbone_epochs=N``: for the first N epochs only the head (and neck) learns; the
  backbone's parameters get no gradients and its BatchNorm layers run in eval mode, so a head
  starting from random weights cannot wreck pretrained features with its first large gradients.
* ``backbone_lr_scale=s``: the backbone's parameter groups learn at ``s`` times the head's rate;
  the learning-rate schedule multiplies every group alike.
* ``freeze_bn=true``: every BatchNorm of the backbone keeps its running statistics and affine
  parameters for the whole run (eval mode held through training), as detectors fine-tuned with
  small batches do: batch statistics of a few images are too noisy to replace ImageNet's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class TransferSettings(NamedTuple):
    """The validated transfer switches of a task (all off by default)."""

    freeze_backbone_epochs: int = 0
    backbone_lr_scale: float = 1.0
    freeze_bn: bool = False

    @property
    def active(self) -> bool:
        """Whether any switch changes what plain training does."""
        return self.freeze_backbone_epochs > 0 or self.backbone_lr_scale != 1.0 or self.freeze_bn

    def backbone_frozen(self, epoch: int) -> bool:
        """Whether the backbone is frozen during the 0-based ``epoch``."""
        return epoch < self.freeze_backbone_epochs


def check_transfer(
    freeze_backbone_epochs: Any, backbone_lr_scale: Any, freeze_bn: Any
) -> TransferSettings:
    """The switches as :class:`TransferSettings`, or one line naming the key that is wrong.

    Raises:
        ValueError: a count that is not an integer >= 0, a scale that is not a number > 0, or
            a ``freeze_bn`` that is not true or false.
    """
    epochs = freeze_backbone_epochs
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(
            f"task.freeze_backbone_epochs={epochs!r}: use an integer >= 0 (0: the backbone "
            "learns from the first epoch)"
        )
    scale = backbone_lr_scale
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not 0 < scale < math.inf:
        raise ValueError(
            f"task.backbone_lr_scale={scale!r}: use a number > 0 (e.g. 0.1: the backbone "
            "learns at a tenth of the head's rate); to stop it learning, use "
            "task.freeze_backbone_epochs"
        )
    if not isinstance(freeze_bn, bool):
        raise ValueError(f"task.freeze_bn={freeze_bn!r}: use true or false")
    return TransferSettings(epochs, float(scale), freeze_bn)


def batch_norms(module: nn.Module) -> Iterator[nn.Module]:
    """Every BatchNorm layer of ``module`` (1d/2d/3d, SyncBatchNorm, timm's BatchNormAct2d)."""
    return (m for m in module.modules() if isinstance(m, _BatchNorm))


def set_backbone_trainable(backbone: nn.Module, settings: TransferSettings, epoch: int) -> None:
    """Switch gradients of the backbone's parameters on or off for ``epoch``.

    Frozen parameters get no gradient, so the optimizer leaves them (and their moments) as they
    are; with ``freeze_bn`` the BatchNorm scales and shifts stay frozen after the unfreeze too.
    """
    trainable = not settings.backbone_frozen(epoch)
    for param in backbone.parameters():
        param.requires_grad_(trainable)
    if settings.freeze_bn:
        for norm in batch_norms(backbone):
            for param in norm.parameters():
                param.requires_grad_(False)


def hold_batch_norm_eval(backbone: nn.Module, settings: TransferSettings, epoch: int) -> None:
    """Put the backbone's BatchNorm layers in eval mode when they must not update statistics."""
    if settings.freeze_bn or settings.backbone_frozen(epoch):
        for norm in batch_norms(backbone):
            norm.eval()


def check_strategy(trainer: Any, settings: TransferSettings) -> None:
    """Refuse DDP without ``find_unused_parameters`` when the backbone starts frozen.

    DDP expects a gradient for every parameter that required one when it wrapped the model; a
    parameter frozen afterwards makes it wait for a gradient that never comes. (``freeze_bn``
    alone is fine: those parameters are frozen before DDP wraps the model.)

    Raises:
        ValueError: naming the switch and the strategy to use instead.
    """
    if trainer.world_size <= 1 or not settings.freeze_backbone_epochs:
        return
    ddp_kwargs = getattr(trainer.strategy, "_ddp_kwargs", None)
    if ddp_kwargs is None or ddp_kwargs.get("find_unused_parameters"):
        return
    raise ValueError(
        "task.freeze_backbone_epochs leaves backbone parameters without gradients, which DDP "
        "waits for: add trainer.strategy=ddp_find_unused_parameters_true"
    )


def scaled_groups(
    groups: list[dict[str, Any]], backbone: nn.Module, lr: float, scale: float
) -> list[dict[str, Any]]:
    """Split each parameter group into backbone and other parameters; the backbone's part
    learns at ``lr * scale`` (empty parts are dropped).

    The learning-rate schedule (``LambdaLR``) multiplies each group's initial rate, so the
    ratio holds at every step.
    """
    in_backbone = {id(p) for p in backbone.parameters()}
    split: list[dict[str, Any]] = []
    for group in groups:
        params = list(group["params"])
        mine = [p for p in params if id(p) in in_backbone]
        rest = [p for p in params if id(p) not in in_backbone]
        if mine:
            split.append({**group, "params": mine, "lr": lr * scale})
        if rest:
            split.append({**group, "params": rest})
    return split
