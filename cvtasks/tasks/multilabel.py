"""Multi-label classification: any number of the classes per image, each a yes/no."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MultilabelF1Score

from cvtasks import tta
from cvtasks.losses.multilabel import MultilabelLoss
from cvtasks.metrics import PresentClassesAP
from cvtasks.registry import TASKS
from cvtasks.tasks.base import TaskModule, class_names_for
from cvtasks.tasks.multilabel_report import MultilabelReport, MultilabelView


@TASKS.register("multilabel")
class MultilabelTask(TaskModule):
    """Sigmoid outputs, one per class: mAP, F1 at the threshold (micro and macro), per-class AP.

    Batches carry ``labels: float[B, C]``, the multi-hot targets (1: the class is in the image).

    Args:
        backbone: backbone module or config (see :class:`TaskModule`).
        num_classes: number of classes (from the dataset).
        head: head config, ``{"name": "linear"|"mlp", ...}`` (the classification heads, with
            one output per class).
        loss: ``{"name": "bce"|"asl", ...}`` (see :class:`~cvtasks.losses.MultilabelLoss`).
        threshold: a class counts as present above this probability (F1, predictions).
        class_names: names of the classes, for predictions and reports.
        **kwargs: optimizer, scheduler, compile, channels_last (see :class:`TaskModule`).
    """

    monitor = "val/map"
    monitor_mode = "max"
    view = MultilabelView
    report = MultilabelReport
    target_kind = "label_set"
    tta_modes = ("flip", "flip_scale")

    def __init__(
        self,
        backbone: nn.Module | Mapping[str, Any],
        num_classes: int,
        head: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        threshold: float = 0.5,
        class_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"task.threshold must be in (0, 1), got {threshold}")
        names = class_names_for(num_classes, class_names)
        self.num_classes = int(num_classes)
        self.threshold = float(threshold)
        super().__init__(
            backbone,
            head or {"name": "linear"},
            head_kwargs={"num_classes": self.num_classes},
            **kwargs,
        )
        self.save_hyperparameters(ignore=["backbone"] if isinstance(backbone, nn.Module) else None)
        self.class_names = names
        self.loss_fn = MultilabelLoss.from_config(loss)
        self.test_class_ap = PresentClassesAP(self.num_classes, per_class=True)

    def make_metrics(self) -> MetricCollection:
        """mAP (the mean of the per-class average precisions over the classes that occur),
        micro and macro F1."""
        return MetricCollection(
            {
                "map": PresentClassesAP(self.num_classes),
                **self._f1_metrics(),
            }
        )

    def make_train_metrics(self) -> MetricCollection:
        """F1 only: average precision keeps every score of the epoch, a cost training skips."""
        return MetricCollection(self._f1_metrics())

    def _f1_metrics(self) -> dict[str, Any]:
        return {
            f"f1_{average}": MultilabelF1Score(
                num_labels=self.num_classes, threshold=self.threshold, average=average
            )
            for average in ("micro", "macro")
        }

    def targets(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The batch's multi-hot ``labels``; data without them is refused, naming the fix."""
        if "labels" not in batch:
            raise ValueError(
                "task=multilabel needs data with a set of labels per image (batch key 'labels'), "
                "e.g. data=digits_multilabel, data=multilabel_csv or data=coco_multilabel; for "
                "one label per image use task=classification"
            )
        return batch["labels"]

    def compute_loss(self, outputs: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The configured loss of the logits against the multi-hot targets."""
        return self.loss_fn(outputs, self.targets(batch))

    def update_metrics(
        self, metrics: MetricCollection, outputs: torch.Tensor, batch: dict[str, Any]
    ) -> None:
        """mAP and F1 from the sigmoid probabilities."""
        metrics.update(outputs.float().sigmoid(), self.targets(batch).long())

    def after_step(self, outputs: torch.Tensor, batch: dict[str, Any], split: str) -> None:
        """Accumulate the per-class average precision on the test split."""
        if split == "test":
            self.test_class_ap.update(outputs.float().sigmoid(), self.targets(batch).long())

    def on_test_epoch_start(self) -> None:
        """Start the per-class AP afresh for each test run."""
        self.test_class_ap.reset()

    def on_test_epoch_end(self) -> None:
        """Store the (process-synced) AP of each class; ``None`` for a class no test image has."""
        values = self.test_class_ap.compute().tolist()
        self.test_reports["per_class_ap"] = {
            name: (None if math.isnan(v) else float(v)) for name, v in zip(self.class_names, values)
        }

    def tta_merge(
        self, outputs: list[torch.Tensor], views: Sequence[tta.View], size: tuple[int, int]
    ) -> torch.Tensor:
        """The mean of the views' sigmoid probabilities, as logits."""
        return tta.sigmoid_logits(tta.mean_probabilities([o.float().sigmoid() for o in outputs]))

    def decoded_outputs(
        self, outputs: torch.Tensor, image_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """``probabilities [N, C]`` (see :meth:`probabilities`; a class is present above
        ``threshold``, stored with the exported model)."""
        return {"probabilities": self.probabilities(outputs)}

    @staticmethod
    def probabilities(logits: torch.Tensor) -> torch.Tensor:
        """Each class's probability ``[N, C]``: the sigmoid of its logit."""
        return logits.float().sigmoid()

    def update_decoded_metrics(
        self, metrics: MetricCollection, outputs: Mapping[str, torch.Tensor], batch: dict[str, Any]
    ) -> None:
        """mAP and F1 from the probabilities."""
        metrics.update(outputs["probabilities"].float(), self.targets(batch).long())

    def predict_outputs(self, outputs: torch.Tensor, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per image: ``labels``, every class above ``threshold`` (most probable first)
        with its probability, and ``probabilities`` of all classes in class order."""
        probs = self.probabilities(outputs.detach()).cpu()
        results = []
        for k in range(probs.shape[0]):
            order = probs[k].argsort(descending=True).tolist()
            labels = [
                {"label": i, "class_name": self.class_names[i], "probability": float(probs[k, i])}
                for i in order
                if probs[k, i] > self.threshold
            ]
            result: dict[str, Any] = {"labels": labels, "probabilities": probs[k].tolist()}
            if "path" in batch:
                result["path"] = str(batch["path"][k])
            results.append(result)
        return results
