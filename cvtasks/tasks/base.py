"""TaskModule: the LightningModule every task builds on.

It holds the network (backbone + head), builds the optimizer and learning-rate schedule from
config (:mod:`cvtasks.tasks.optimization`), logs per-split torchmetrics collections (synced
across processes by torchmetrics), applies the ``compile`` and ``channels_last`` switches, and
routes ``predict_step`` to the task's per-image outputs. A task subclass supplies its head,
loss, metrics and predict output, and declares beside itself what the commands show of it:
``view`` (records and pictures of ``predict``), ``report`` (charts of ``evaluate``),
``dense_output`` and ``target_kind``.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MetricCollection

from cvtasks.backbones import validate_backbone
from cvtasks.network_parts import NetworkParts
from cvtasks.registry import BACKBONES, HEADS
from cvtasks.tasks import transfer
from cvtasks.tasks.deployment import DeploymentHooks
from cvtasks.tasks.optimization import (
    DEFAULT_OPTIMIZER,
    DEFAULT_SCHEDULER,
    SCHEDULERS,
    OptimizationHooks,
)
from cvtasks.training import speed
from cvtasks.training.speed import check_compile
from cvtasks.viz.views import View

if TYPE_CHECKING:
    from cvtasks.viz.report import Report


class WithAux(NamedTuple):
    """Training-time outputs of a network whose backbone has auxiliary classifiers."""

    main: Any
    aux: list[torch.Tensor]


class TaskNetwork(nn.Module):
    """Backbone and head as one module, so that one ``compile`` covers the whole forward pass.

    A backbone with auxiliary classifiers (GoogLeNet's intermediate losses, seed 001) exposes
    ``aux_enabled`` and ``forward_features_aux(x) -> (features, aux_logits)``; in training mode the
    network then returns :class:`WithAux`, and in eval mode only the head's outputs.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> Any:
        """Raw head outputs for a batch of images (plus auxiliary logits when training)."""
        if self.training and getattr(self.backbone, "aux_enabled", False):
            features, aux = self.backbone.forward_features_aux(x)
            return WithAux(self.head(features), list(aux))
        return self.head(self.backbone.forward_features(x))


def build_backbone(backbone: nn.Module | Mapping[str, Any]) -> nn.Module:
    """A backbone module as given, or built from ``{"name": ..., **kw}`` by the registry."""
    if isinstance(backbone, nn.Module):
        module = backbone
    else:
        cfg = dict(backbone)
        if "name" not in cfg:
            raise ValueError("backbone config needs a 'name' (e.g. backbone.name=lenet5)")
        module = BACKBONES.build(cfg.pop("name"), **cfg)
    validate_backbone(module)
    return module


def without_compute_groups(metrics: MetricCollection) -> MetricCollection:
    """The same metrics, each keeping its own state.

    torchmetrics merges metrics whose states agree after the first batch into one compute group
    and from then on computes all of them from one state. States can agree by coincidence: top-1
    and top-5 counts are equal on a batch where every image is right, and macro F1 was then
    computed from the top-5 counts. The states are small, so nothing is shared.
    """
    members = dict(metrics.items(keep_base=True, copy_state=False))
    return MetricCollection(members, compute_groups=False)


def class_names_for(
    num_classes: int, class_names: Sequence[str] | None, first: int = 0
) -> list[str]:
    """``class_names`` checked against ``num_classes``, or ``"first"``, ``"first + 1"``, ...

    Raises:
        ValueError: ``num_classes`` below 1, or a name list of another length.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if class_names is None or len(class_names) == 0:
        return [str(i) for i in range(first, first + num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names given for {num_classes} classes")
    return [str(name) for name in class_names]


class TaskModule(
    DeploymentHooks, OptimizationHooks, NetworkParts, pl.LightningModule, metaclass=ABCMeta
):
    """Base LightningModule of every task.

    Args:
        backbone: a backbone module, or its config ``{"name": ..., **kwargs}`` (stored as a
            hyper-parameter so ``load_from_checkpoint`` can rebuild it).
        head: head config ``{"name": ..., **kwargs}``; built with the backbone's ``feature_info``.
        optimizer: a Hydra partial config of a ``torch.optim`` class (``_target_``, ``_partial_``).
        scheduler: ``{"name": "cosine"|"step"|"constant", "warmup_epochs": float, ...}``.
        compile: compile the network in place (``nn.Module.compile``) with this mode;
            ``"auto"``: on a CUDA device only (see :mod:`cvtasks.training.speed`).
        channels_last: keep weights and inputs in channels-last memory format (``"auto"``: on
            a CUDA device only).
        freeze_backbone_epochs: train only the head for this many first epochs (backbone
            without gradients, its BatchNorm in eval mode); see :mod:`cvtasks.tasks.transfer`.
        backbone_lr_scale: the backbone's learning rate as a multiple of the head's.
        freeze_bn: keep every backbone BatchNorm's statistics and affine parameters fixed.
    """

    #: the validation metric the run monitors (checkpoints, sweeps), and whether higher is better.
    monitor: ClassVar[str] = "val/loss"
    monitor_mode: ClassVar[str] = "min"
    #: how ``predict`` writes and draws each result (:class:`~cvtasks.viz.views.View`): the
    #: plain view writes the result as JSON values and draws no picture.
    view: ClassVar[type[View]] = View
    #: the charts and worst-sample grid of ``evaluate`` (:class:`~cvtasks.viz.report.Report`);
    #: ``None``: metrics only.
    report: ClassVar[type[Report] | None] = None
    #: per-pixel outputs: the input size must then be divisible by the backbone's deepest
    #: reduction (checked when the config is validated).
    dense_output: ClassVar[bool] = False
    #: the annotation the task learns from: ``"class"`` (one label per image), ``"label_set"``,
    #: ``"box"``, ``"objects"``, ``"keypoints"``, ``"mask"`` or ``"identity"``. Data whose module
    #: declares another ``target_kind`` is refused before it is prepared; ``None``: unchecked.
    target_kind: ClassVar[str | None] = None
    #: the test-time augmentations (:mod:`cvtasks.tta`) whose views :meth:`tta_merge` merges:
    #: ``("flip",)`` mirrored views, ``("flip", "flip_scale")`` rescaled ones too; ``()``: none.
    tta_modes: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        backbone: nn.Module | Mapping[str, Any],
        head: Mapping[str, Any],
        head_kwargs: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        compile: bool | str = False,
        channels_last: bool = False,
        freeze_backbone_epochs: int = 0,
        backbone_lr_scale: float = 1.0,
        freeze_bn: bool = False,
    ) -> None:
        super().__init__()
        self.transfer = transfer.check_transfer(
            freeze_backbone_epochs, backbone_lr_scale, freeze_bn
        )
        self.optimizer_cfg = dict(optimizer or DEFAULT_OPTIMIZER)
        self.scheduler_cfg = {**DEFAULT_SCHEDULER, **dict(scheduler or {})}
        if self.scheduler_cfg["name"] not in SCHEDULERS:
            raise ValueError(
                f"task.scheduler.name={self.scheduler_cfg['name']!r} is not allowed; "
                f"use one of {SCHEDULERS}"
            )
        self.compile_mode = check_compile(compile)
        self.channels_last = speed.check_switch("channels_last", channels_last)
        net = build_backbone(backbone)
        head_cfg = dict(head)
        head_module = HEADS.build(
            head_cfg.pop("name"), feature_info=net.feature_info, **head_cfg, **(head_kwargs or {})
        )
        self.net = TaskNetwork(net, head_module)
        # trainable as after any head-first epochs (freeze_bn parameters stay frozen)
        transfer.set_backbone_trainable(net, self.transfer, self.transfer.freeze_backbone_epochs)
        metrics = without_compute_groups(self.make_metrics())
        self.train_metrics = without_compute_groups(self.make_train_metrics()).clone(
            prefix="train/"
        )
        for metric in self.train_metrics.values():
            # torchmetrics checks arguments by their values (torch.unique of the labels), a
            # device-to-host sync in every training step; validation updates still check them.
            if hasattr(metric, "validate_args"):
                metric.validate_args = False
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        #: extra test-time results (e.g. a confusion matrix) written into metrics.json by train.
        self.test_reports: dict[str, Any] = {}
        #: the named terms of a composite loss, set by ``compute_loss`` for the step to log as
        #: ``<split>/<name>`` (e.g. ``loss_cls`` and ``loss_box``); ``None``: a single loss.
        self.loss_terms: dict[str, torch.Tensor] | None = None
        self._configured = False

    # -- what a task supplies ------------------------------------------------------------------
    @abstractmethod
    def make_metrics(self) -> MetricCollection:
        """The task's metrics; cloned per split with prefixes ``train/``, ``val/``, ``test/``."""

    def make_train_metrics(self) -> MetricCollection:
        """The metrics of the training split (``train/``): :meth:`make_metrics` unless a task
        swaps in ones whose updates never wait for the device (e.g.
        :class:`~cvtasks.metrics.ConfusionScore`), as a training step should not."""
        return self.make_metrics()

    @abstractmethod
    def compute_loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        """The task's training loss from raw head outputs and the batch targets."""

    @abstractmethod
    def update_metrics(
        self, metrics: MetricCollection, outputs: Any, batch: dict[str, Any]
    ) -> None:
        """Feed one batch into a metric collection."""

    @abstractmethod
    def predict_outputs(self, outputs: Any, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per-image results in pixel units (the batch table of docs/architecture.md)."""

    # -- network -------------------------------------------------------------------------------
    @property
    def run_device(self) -> torch.device:
        """The device the Trainer runs this module on (before it has been moved there)."""
        trainer = self._trainer
        return trainer.strategy.root_device if trainer is not None else self.device

    def configure_model(self) -> None:
        """Apply ``channels_last`` and ``compile`` once, in place, so state-dict keys stay clean.

        ``auto`` values are settled here, for the Trainer's device; on CUDA, TF32 is enabled.
        """
        if self._configured:
            return
        self._configured = True
        device = self.run_device
        self.channels_last = bool(speed.resolve(self.channels_last, device))
        self.compile_mode = speed.resolve(self.compile_mode, device)
        if device.type == "cuda":
            speed.enable_cuda_fast_math()
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if self.compile_mode:
            mode = None if self.compile_mode is True else self.compile_mode
            self.net.compile(mode=mode)

    def train(self, mode: bool = True) -> TaskModule:
        """Training mode, with the backbone's BatchNorm held in eval mode while it is frozen."""
        super().train(mode)
        if mode:
            transfer.hold_batch_norm_eval(self.net.backbone, self.transfer, self.current_epoch)
        return self

    def on_fit_start(self) -> None:
        """Refuse a distributed strategy that cannot train a partly frozen backbone."""
        transfer.check_strategy(self.trainer, self.transfer)

    def on_train_epoch_start(self) -> None:
        """Freeze or unfreeze the backbone for this epoch (``freeze_backbone_epochs``)."""
        if self.transfer.active:
            transfer.set_backbone_trainable(self.net.backbone, self.transfer, self.current_epoch)
            self.train()  # settle the BatchNorm modes for this epoch

    def forward(self, images: torch.Tensor) -> Any:
        """Raw head outputs (logits, boxes, …) for normalized images ``[B, 3, H, W]``."""
        if self.channels_last is True:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images)

    # -- steps ---------------------------------------------------------------------------------
    def log_skipped(self, batch: dict[str, Any], split: str) -> None:
        """Count the batch's unreadable images (``data.on_bad_image=skip``) in ``<split>/``."""
        skipped = batch.get("skipped")
        if skipped is not None:
            self.log(
                f"{split}/skipped_images",
                skipped.float().sum(),
                reduce_fx="sum",
                on_step=False,
                on_epoch=True,
                sync_dist=True,
            )

    def _step(self, batch: dict[str, Any], split: str) -> torch.Tensor | None:
        self.log_skipped(batch, split)
        images = batch["image"]
        if images.shape[0] == 0:  # every image of the batch was unreadable and skipped
            return self._empty_batch_loss(split)
        outputs = self(images)
        aux: list[torch.Tensor] = []
        if isinstance(outputs, WithAux):
            outputs, aux = outputs
        loss = self.compute_loss(outputs, batch)
        if aux:
            loss = loss + self.aux_loss(aux, batch)
        metrics = {"train": self.train_metrics, "val": self.val_metrics, "test": self.test_metrics}
        self.update_metrics(metrics[split], outputs, batch)
        on_step = split == "train"
        self.log(
            f"{split}/loss",
            loss,
            on_step=on_step,
            on_epoch=True,
            prog_bar=True,
            sync_dist=not on_step,
            batch_size=images.shape[0],
        )
        self.log_dict(metrics[split], on_step=False, on_epoch=True, prog_bar=split == "val")
        terms, self.loss_terms = self.loss_terms, None
        if terms:
            self.log_loss_terms(split, terms, batch_size=images.shape[0])
        self.after_step(outputs, batch, split)
        return loss

    def _empty_batch_loss(self, split: str) -> torch.Tensor | None:
        """``None`` skips an empty training batch, but not under DDP: there the other processes
        wait in the gradient all-reduce, so every parameter gets a zero gradient instead."""
        if split != "train" or self.trainer.world_size == 1:
            return None
        return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0

    def aux_loss(self, aux: list[torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """Loss of auxiliary outputs; a task that enables them overrides this."""
        raise TypeError(f"{type(self).__name__} does not train auxiliary outputs")

    def after_step(self, outputs: Any, batch: dict[str, Any], split: str) -> None:
        """Hook for extra per-batch bookkeeping (e.g. a test-time confusion matrix)."""

    def log_loss_terms(
        self, split: str, terms: Mapping[str, torch.Tensor], batch_size: int
    ) -> None:
        """Log each term of a composite loss as ``<split>/<name>``, averaged over the epoch."""
        for name, value in terms.items():
            self.log(
                f"{split}/{name}",
                value.detach(),
                on_step=False,
                on_epoch=True,
                sync_dist=split != "train",
                batch_size=batch_size,
            )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """One optimization step's loss; ``None`` skips a batch with no readable image."""
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Loss and metrics on a validation batch."""
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Loss and metrics on a test batch."""
        self._step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """Per-image outputs of the task (pixel units)."""
        return self.predict_outputs(self(batch["image"]), batch)
