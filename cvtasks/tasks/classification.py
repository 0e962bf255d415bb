"""Image classification: one label per image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from cvtasks import tta
from cvtasks.metrics import ConfusionScore, TopKAccuracy
from cvtasks.registry import TASKS
from cvtasks.tasks.base import TaskModule, class_names_for
from cvtasks.tasks.classification_report import ClassificationReport, ClassificationView
from cvtasks.tasks.mixing import build_mixup, mix_batch


@TASKS.register("classification")
class ClassificationTask(TaskModule):
    """Cross-entropy classification: top-1 / top-5 accuracy, macro F1, test confusion matrix.

    Args:
        backbone: backbone module or config (see :class:`TaskModule`).
        num_classes: number of classes (from the dataset).
        head: head config, ``{"name": "linear"|"mlp", ...}``.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        class_names: names of the classes, for predictions and reports.
        top_k: how many ranked classes ``predict`` returns per image.
        aux_weight: weight of each auxiliary classifier's loss for backbones that have them
            (GoogLeNet's intermediate losses, seed 001); 0 turns them off.
        mixup: mixup/CutMix of training batches with timm's ``Mixup``, e.g.
            ``{"mixup_alpha": 0.8, "cutmix_alpha": 1.0}`` (see
            :func:`~cvtasks.tasks.mixing.build_mixup`); ``None`` or both alphas 0 turn it off. The
            training loss is then the cross-entropy against the mixed soft targets, smoothed by
            ``label_smoothing`` unless ``mixup`` sets its own; metrics count the unmixed labels.
        **kwargs: optimizer, scheduler, compile, channels_last (see :class:`TaskModule`).
    """

    monitor = "val/acc"
    monitor_mode = "max"
    view = ClassificationView
    report = ClassificationReport
    target_kind = "class"
    tta_modes = ("flip", "flip_scale")

    def __init__(
        self,
        backbone: nn.Module | Mapping[str, Any],
        num_classes: int,
        head: Mapping[str, Any] | None = None,
        label_smoothing: float = 0.0,
        class_names: Sequence[str] | None = None,
        top_k: int = 5,
        aux_weight: float = 0.3,
        mixup: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"task.label_smoothing must be in [0, 1), got {label_smoothing}")
        names = class_names_for(num_classes, class_names)
        self.num_classes = int(num_classes)
        super().__init__(
            backbone,
            head or {"name": "linear"},
            head_kwargs={"num_classes": self.num_classes},
            **kwargs,
        )
        self.save_hyperparameters(ignore=["backbone"] if isinstance(backbone, nn.Module) else None)
        self.label_smoothing = float(label_smoothing)
        self.class_names = names
        self.top_k = max(1, min(int(top_k), self.num_classes))
        self.test_confusion = MulticlassConfusionMatrix(num_classes=self.num_classes)
        if aux_weight < 0:
            raise ValueError(f"task.aux_weight must be >= 0, got {aux_weight}")
        self.aux_weight = float(aux_weight)
        if self.aux_weight > 0 and hasattr(self.backbone, "init_aux"):
            self.backbone.init_aux(self.num_classes)
        self.mixup = build_mixup(mixup, self.num_classes, self.label_smoothing)
        self.soft_target_loss = SoftTargetCrossEntropy()

    def make_metrics(self) -> MetricCollection:
        """Top-1 accuracy, top-5 accuracy (when there are more than 5 classes) and macro F1."""
        metrics: dict[str, Any] = {
            "acc": MulticlassAccuracy(num_classes=self.num_classes, average="micro"),
            "f1_macro": MulticlassF1Score(num_classes=self.num_classes, average="macro"),
        }
        if self.num_classes > 5:
            metrics["acc_top5"] = MulticlassAccuracy(
                num_classes=self.num_classes, top_k=5, average="micro"
            )
        return MetricCollection(metrics)

    def make_train_metrics(self) -> MetricCollection:
        """As :meth:`make_metrics`, with macro F1 and top-5 accuracy counted by updates that
        never wait for the device."""
        metrics = dict(self.make_metrics().items(keep_base=True))
        metrics["f1_macro"] = ConfusionScore(self.num_classes, "f1")
        if "acc_top5" in metrics:
            metrics["acc_top5"] = TopKAccuracy(k=5)
        return MetricCollection(metrics)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """Mix the batch when ``mixup`` is on (soft targets in ``batch["soft_target"]``), then
        the usual step."""
        if self.mixup is not None and batch["image"].shape[0] > 0:
            images, soft = mix_batch(self.mixup, batch["image"], batch["label"])
            batch = {**batch, "image": images, "soft_target": soft}
        return super().training_step(batch, batch_idx)

    def compute_loss(self, outputs: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """Cross-entropy of the logits against ``batch["label"]``, with label smoothing, or
        against the mixed ``batch["soft_target"]`` of a mixup batch."""
        if "soft_target" in batch:
            return self.soft_target_loss(outputs.float(), batch["soft_target"])
        return F.cross_entropy(
            outputs.float(), batch["label"], label_smoothing=self.label_smoothing
        )

    def aux_loss(self, aux: list[torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """``aux_weight`` times the cross-entropy of each auxiliary classifier."""
        return self.aux_weight * sum(self.compute_loss(logits, batch) for logits in aux)

    def update_metrics(
        self, metrics: MetricCollection, outputs: torch.Tensor, batch: dict[str, Any]
    ) -> None:
        """Accuracy and F1 from the logits."""
        metrics.update(outputs.float(), batch["label"])

    def after_step(self, outputs: torch.Tensor, batch: dict[str, Any], split: str) -> None:
        """Accumulate the confusion matrix on the test split."""
        if split == "test":
            self.test_confusion.update(outputs.float(), batch["label"])

    def on_test_epoch_start(self) -> None:
        """Start a fresh confusion matrix for each test run."""
        self.test_confusion.reset()

    def on_test_epoch_end(self) -> None:
        """Store the (process-synced) confusion matrix: rows are true classes, columns predicted."""
        matrix = self.test_confusion.compute()
        self.test_reports["confusion_matrix"] = {
            "classes": self.class_names,
            "matrix": matrix.long().tolist(),
        }

    def tta_merge(
        self, outputs: list[torch.Tensor], views: Sequence[tta.View], size: tuple[int, int]
    ) -> torch.Tensor:
        """The mean of the views' softmax probabilities, as logits (their logarithm)."""
        return tta.softmax_logits(tta.mean_probabilities([o.float().softmax(1) for o in outputs]))

    def ranked(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Softmax ``probabilities [N, C]`` and the ``top_k`` best: ``[N, k]`` probabilities and
        labels, best first (``k = min(top_k, C)``). Traceable: exports use it."""
        probs = logits.float().softmax(dim=1)
        top_p, top_i = probs.topk(self.top_k, dim=1)
        return probs, top_p, top_i

    def decoded_outputs(
        self, outputs: torch.Tensor, image_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """``probabilities``, ``top_k_labels`` and ``top_k_probabilities`` (see :meth:`ranked`)."""
        probs, top_p, top_i = self.ranked(outputs)
        return {"probabilities": probs, "top_k_labels": top_i, "top_k_probabilities": top_p}

    def update_decoded_metrics(
        self, metrics: MetricCollection, outputs: Mapping[str, torch.Tensor], batch: dict[str, Any]
    ) -> None:
        """Accuracy and F1 from the probabilities (their ranking is the logits')."""
        metrics.update(outputs["probabilities"].float(), batch["label"])

    def predict_outputs(self, outputs: torch.Tensor, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per image: ``label``, ``class_name``, ``probability`` and the ``top_k`` ranking."""
        probs, top_p, top_i = self.ranked(outputs.detach())
        results = []
        for k in range(probs.shape[0]):
            ranking = [
                {"label": int(i), "class_name": self.class_names[int(i)], "probability": float(p)}
                for p, i in zip(top_p[k], top_i[k])
            ]
            result = {**ranking[0], "top_k": ranking}
            if "path" in batch:
                result["path"] = str(batch["path"][k])
            results.append(result)
        return results
