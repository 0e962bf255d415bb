"""Single-object localization and classification (seed 001 §6.6, "Object Localization").

Each image holds one object of ``C`` classes or *nothing*. The head scores ``C + 1`` classes
(label 0 is *nothing*) and predicts one box ``(cx, cy, w, h)`` normalized to the image; the loss
is cross-entropy + gamma * 1[object] * box loss (:mod:`cvtasks.losses.localization`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from cvtasks import tta
from cvtasks.losses.localization import LocalizationLoss
from cvtasks.metrics.localization import LocalizationAccuracy, MeanBoxIoU
from cvtasks.ops.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh
from cvtasks.registry import TASKS
from cvtasks.tasks.base import TaskModule, class_names_for
from cvtasks.tasks.localization_report import LocalizationReport, LocalizationView

NOTHING = "nothing"


@TASKS.register("localization")
class LocalizationTask(TaskModule):
    """Classify the one object of an image (or *nothing*) and regress its box.

    Metrics, per split: ``acc`` (class accuracy over the ``C + 1`` classes, *nothing*
    included), ``miou`` (mean IoU over the images that hold an object) and ``loc_acc`` (right
    class and, for an object, IoU >= ``iou_threshold``); the run monitors ``val/loc_acc``.

    Args:
        backbone: backbone module or config (see :class:`TaskModule`).
        num_classes: object classes ``C``, without *nothing* (from the dataset).
        head: head config, ``{"name": "localization" | "localization_fc", ...}``.
        loss: :class:`~cvtasks.losses.localization.LocalizationLoss` options: ``gamma``,
            ``box_loss`` (mse | smooth_l1 | giou), ``smooth_l1_beta``, ``label_smoothing``.
        class_names: names of the ``C`` object classes, for predictions.
        iou_threshold: the least IoU that ``loc_acc`` counts as a found object.
        **kwargs: optimizer, scheduler, compile, channels_last (see :class:`TaskModule`).
    """

    monitor = "val/loc_acc"
    monitor_mode = "max"
    view = LocalizationView
    report = LocalizationReport
    target_kind = "box"
    tta_modes = ("flip",)

    def __init__(
        self,
        backbone: nn.Module | Mapping[str, Any],
        num_classes: int,
        head: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        iou_threshold: float = 0.5,
        **kwargs: Any,
    ) -> None:
        names = class_names_for(num_classes, class_names, first=1)
        self.num_classes = int(num_classes)
        self.iou_threshold = float(iou_threshold)
        super().__init__(
            backbone,
            head or {"name": "localization"},
            head_kwargs={"num_classes": self.num_classes},
            **kwargs,
        )
        self.save_hyperparameters(ignore=["backbone"] if isinstance(backbone, nn.Module) else None)
        self.criterion = LocalizationLoss(**dict(loss or {}))
        #: name of each predicted label: index 0 is *nothing*, 1..C the object classes.
        self.label_names = [NOTHING, *names]

    def make_metrics(self) -> MetricCollection:
        """``acc`` over C + 1 classes, ``miou`` over object images, ``loc_acc``."""
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes=self.num_classes + 1, average="micro"),
                "miou": MeanBoxIoU(),
                "loc_acc": LocalizationAccuracy(iou_threshold=self.iou_threshold),
            }
        )

    def compute_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """Seed 001's CE + gamma * 1[object] * box loss against ``label`` and ``box``."""
        parts = self.criterion(outputs["logits"], outputs["box"], batch["label"], batch["box"])
        self.loss_terms = {"loss_cls": parts.classification, "loss_box": parts.box}
        return parts.total

    def update_metrics(
        self, metrics: MetricCollection, outputs: dict[str, torch.Tensor], batch: dict[str, Any]
    ) -> None:
        """Feed scores, boxes and targets; each metric takes the arguments it names."""
        metrics.update(
            preds=outputs["logits"].detach().float(),
            target=batch["label"],
            pred_box=outputs["box"].detach().float(),
            target_box=batch["box"],
            label=batch["label"],
        )

    def tta_merge(
        self,
        outputs: list[dict[str, torch.Tensor]],
        views: Sequence[tta.View],
        size: tuple[int, int],
    ) -> dict[str, torch.Tensor]:
        """Mean class probabilities (as logits) and mean box, mirrored boxes mirrored back."""
        probs = tta.mean_probabilities([o["logits"].float().softmax(1) for o in outputs])
        boxes = [
            tta.mirror_cxcywh(o["box"].float()) if view.flip else o["box"].float()
            for o, view in zip(outputs, views)
        ]
        return {"logits": tta.softmax_logits(probs), "box": torch.stack(boxes).mean(dim=0)}

    def decode(
        self, outputs: Mapping[str, torch.Tensor], sizes: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The answer of the raw outputs, in pixels of frames ``sizes`` ``(height, width)``
        (``[2]``, or per image ``[N, 2]``). Traceable: exports use it.

        Returns:
            ``probabilities [N, C + 1]`` (label 0: *nothing*), the best ``label [N]`` with its
            ``probability [N]``, ``p_nothing [N]`` and ``box [N, 4]`` (``x_min, y_min, x_max,
            y_max``, clipped to the frame; meaningless where the label is 0).
        """
        probs = outputs["logits"].float().softmax(dim=1)
        probability, label = probs.max(dim=1)
        boxes = cxcywh_to_xyxy(outputs["box"].float()).clamp(0.0, 1.0)
        height, width = sizes.to(boxes).unbind(-1)
        scale = torch.stack([width, height, width, height], dim=-1)
        return {
            "probabilities": probs,
            "label": label,
            "probability": probability,
            "p_nothing": probs[:, 0],
            "box": boxes * scale,
        }

    def decoded_outputs(
        self, outputs: Mapping[str, torch.Tensor], image_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """:meth:`decode` in pixels of the network input."""
        return self.decode(outputs, torch.tensor([float(s) for s in image_size]))

    def update_decoded_metrics(
        self, metrics: MetricCollection, outputs: Mapping[str, torch.Tensor], batch: dict[str, Any]
    ) -> None:
        """Decoded: the probabilities, and the box back in ``(cx, cy, w, h)`` of the input."""
        height, width = batch["image"].shape[-2:]
        box = outputs["box"].float() / outputs["box"].new_tensor([width, height] * 2).float()
        metrics.update(
            preds=outputs["probabilities"].float(),
            target=batch["label"],
            pred_box=xyxy_to_cxcywh(box),
            target_box=batch["box"],
            label=batch["label"],
        )

    def predict_outputs(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Per image: ``label``, ``class_name``, ``probability``, ``p_nothing`` and ``box``.

        ``box`` is ``[x_min, y_min, x_max, y_max]`` in pixels of the original image (from
        ``batch["orig_size"]``, ``(height, width)``; the network input's size when absent),
        clipped to the image; ``None`` when the prediction is *nothing*. With ``batch["index"]``
        the result also carries ``index``, the sample's position in its dataset.
        """
        sizes = batch.get("orig_size", torch.tensor(batch["image"].shape[-2:]))
        found = {key: value.detach() for key, value in self.decode(outputs, sizes).items()}
        results = []
        for k in range(found["label"].shape[0]):
            label = int(found["label"][k])
            result: dict[str, Any] = {
                "label": label,
                "class_name": self.label_names[label],
                "probability": float(found["probability"][k]),
                "p_nothing": float(found["p_nothing"][k]),
                "box": None if label == 0 else [round(float(v), 2) for v in found["box"][k]],
            }
            if "index" in batch:  # the sample's index in its split: dataset.samples[index].path
                result["index"] = int(batch["index"][k])
            results.append(result)
        return results
