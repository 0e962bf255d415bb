"""Object detection (seed 001 §6.6, Fig 6.16 (b)): every object of an image, as a box and a class.

A neck (an FPN by default) merges the backbone's stages into one map at ``stride`` 4; the
``centernet`` head scores each cell per class (a heatmap whose peaks are object centres) and
regresses the distances from the cell to the four box edges (:mod:`cvtasks.heads.detection`).
Training targets and decoding are in :mod:`cvtasks.ops.centernet`, the loss (a pixel focal loss
and a GIoU/L1 box loss) in :mod:`cvtasks.losses.detection`.

Metrics are COCO's (torchmetrics ``MeanAveragePrecision`` on the ``faster_coco_eval`` backend,
synced across processes): ``map`` (mAP@[.5:.95]), ``map50``, ``map75``, ``mar100``, and per class
``ap/<name>``; crowd boxes (COCO ``iscrowd``, VOC ``difficult``) are neither found nor missed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchmetrics import MetricCollection

from cvtasks import tta
from cvtasks.losses.detection import DetectionLoss
from cvtasks.metrics.detection import CocoMeanAveragePrecision
from cvtasks.ops.centernet import decode, detection_targets, unpad
from cvtasks.registry import TASKS
from cvtasks.tasks.base import TaskModule, class_names_for
from cvtasks.tasks.detection_report import DetectionReport, DetectionView

# faster_coco_eval logs its 12-line summary table at INFO on every evaluation (each validation
# epoch); the numbers are logged as metrics instead.
logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)

#: COCO's numbers, by the names they are logged under, from MeanAveragePrecision's results.
LOGGED = {"map": "map", "map50": "map_50", "map75": "map_75", "mar100": "mar_100"}


@TASKS.register("detection")
class DetectionTask(TaskModule):
    """Find every object of ``C`` classes in an image: a box, a class and a score each.

    Metrics on the validation and test splits (training computes none: matching every
    detection costs more than the step): ``map``, ``map50``, ``map75``, ``mar100`` and per class
    ``ap/<name>``; the run monitors ``val/map50``.

    Args:
        backbone: backbone module or config (see :class:`TaskModule`).
        num_classes: object classes ``C`` (from the dataset).
        head: head config, ``{"name": "centernet", "stride": 4, "neck": {...}, ...}``.
        loss: :class:`~cvtasks.losses.detection.DetectionLoss` options.
        class_names: names of the ``C`` classes, for predictions and per-class AP.
        score_threshold: the least score a detection is kept with.
        max_detections: the most detections kept per image (after class-wise NMS).
        nms_iou: class-wise non-maximum suppression IoU threshold.
        top_k: candidate peaks taken from the heatmap before NMS.
        **kwargs: optimizer, scheduler, compile, channels_last (see :class:`TaskModule`).
    """

    monitor = "val/map50"
    monitor_mode = "max"
    view = DetectionView
    report = DetectionReport
    target_kind = "objects"
    tta_modes = ("flip",)
    dense_output = True  # per-cell maps: the input must divide by the deepest reduction

    def __init__(
        self,
        backbone: nn.Module | Mapping[str, Any],
        num_classes: int,
        head: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        score_threshold: float = 0.05,
        max_detections: int = 100,
        nms_iou: float = 0.5,
        top_k: int = 100,
        **kwargs: Any,
    ) -> None:
        self.class_names = class_names_for(num_classes, class_names)
        self.num_classes = int(num_classes)
        self.score_threshold = float(score_threshold)
        self.max_detections = int(max_detections)
        self.nms_iou = float(nms_iou)
        self.top_k = int(top_k)
        if self.max_detections < 1 or self.top_k < 1:
            raise ValueError(
                f"task.max_detections={max_detections} and task.top_k={top_k} must be >= 1"
            )
        super().__init__(
            backbone,
            head or {"name": "centernet"},
            head_kwargs={"num_classes": self.num_classes},
            **kwargs,
        )
        self.save_hyperparameters(ignore=["backbone"] if isinstance(backbone, nn.Module) else None)
        self.criterion = DetectionLoss(**dict(loss or {}))
        self.val_map = CocoMeanAveragePrecision()
        self.test_map = CocoMeanAveragePrecision()

    # -- metrics: mAP is computed once per epoch from every image's detections -----------------
    def make_metrics(self) -> MetricCollection:
        """None per step: mAP (:attr:`val_map`, :attr:`test_map`) is logged at epoch end."""
        return MetricCollection({})

    def update_metrics(
        self, metrics: MetricCollection, outputs: dict[str, torch.Tensor], batch: dict[str, Any]
    ) -> None:
        """Feed the decoded detections and the ground truth of a validation or test batch."""
        if metrics is self.train_metrics:
            return
        target_map = self.test_map if metrics is self.test_metrics else self.val_map
        target_map.update(self.decode(outputs), _targets(batch))

    def make_export_metrics(self) -> MetricCollection:
        """COCO mAP (``map``, ``map_50``, ...) of the exported graph's detections."""
        return MetricCollection({"map": CocoMeanAveragePrecision()}, compute_groups=False)

    def update_export_metrics(
        self,
        metrics: MetricCollection,
        outputs: Mapping[str, torch.Tensor],
        batch: dict[str, Any],
        decoded: bool,
    ) -> None:
        """The detections (decoded: the filled slots; raw: decoded here) against the truth."""
        if decoded:
            found = unpad(outputs["boxes"], outputs["scores"], outputs["labels"])
        else:
            found = self.decode(outputs)
        metrics["map"].update(found, _targets(batch))

    def _log_map(self, split: str, metric: CocoMeanAveragePrecision) -> dict[str, Any]:
        results = metric.compute()  # synced across processes by torchmetrics
        metric.reset()
        for name, key in LOGGED.items():
            self.log(f"{split}/{name}", results[key].float(), sync_dist=False)
        return results

    def on_validation_epoch_end(self) -> None:
        """Log ``val/map``, ``val/map50`` (monitored), ``val/map75``, ``val/mar100``."""
        if self.val_map.update_count:
            self._log_map("val", self.val_map)

    def on_test_epoch_end(self) -> None:
        """Log the test mAPs and per-class AP; store per-class AP for ``metrics.json``."""
        if not self.test_map.update_count:
            return
        results = self._log_map("test", self.test_map)
        per_class: dict[str, float | None] = {name: None for name in self.class_names}
        classes = results["classes"].reshape(-1).tolist()
        for label, ap in zip(classes, results["map_per_class"].reshape(-1).tolist()):
            if 0 <= label < self.num_classes and ap >= 0:  # -1: no ground truth of the class
                per_class[self.class_names[label]] = ap
                self.log(f"test/ap/{self.class_names[label]}", float(ap), sync_dist=False)
        self.test_reports["ap_per_class"] = per_class

    # -- loss ----------------------------------------------------------------------------------
    def compute_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """Pixel focal loss on the heatmap plus the box loss at the objects' cells."""
        heatmap = outputs["heatmap"]
        targets = detection_targets(
            [b.to(heatmap.device) for b in batch["boxes"]],
            [lab.to(heatmap.device) for lab in batch["labels"]],
            [c.to(heatmap.device) for c in _crowd(batch)],
            num_classes=self.num_classes,
            out_size=tuple(heatmap.shape[-2:]),
            stride=self.head.stride,
        )
        parts = self.criterion(outputs, targets, self.head.stride)
        self.loss_terms = {"loss_heatmap": parts.heatmap, "loss_box": parts.box}
        return parts.total

    # -- decoding and predictions --------------------------------------------------------------
    def decode_padded(
        self, outputs: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fixed-size detections per image: ``boxes [B, D, 4]`` (x1, y1, x2, y2 in input pixels),
        ``scores [B, D]`` (0 in empty slots) and ``labels [B, D]`` (-1 in empty slots), best
        first, ``D = max_detections``. Traceable: exports use it. Outputs merged by
        :meth:`tta_merge` carry them already, as ``detections``."""
        if "detections" in outputs:
            return outputs["detections"]
        return decode(
            outputs["heatmap"].float(),
            outputs["box"].float(),
            stride=self.head.stride,
            k=self.top_k,
            score_threshold=self.score_threshold,
            nms_iou=self.nms_iou,
            max_detections=self.max_detections,
        )

    def decode(self, outputs: Mapping[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Per image ``{"boxes": [D_i, 4], "scores": [D_i], "labels": [D_i]}`` in input pixels."""
        with torch.no_grad():
            return unpad(*self.decode_padded(outputs))

    def tta_merge(
        self,
        outputs: list[Mapping[str, torch.Tensor]],
        views: Sequence[tta.View],
        size: tuple[int, int],
    ) -> dict[str, Any]:
        """Every view's detections, mirrored boxes mirrored back (``x -> W - x``), as one set
        after class-wise NMS (``nms_iou``; the best ``max_detections`` kept), under
        ``detections``. The plain view's raw maps stay beside them: the test loss is theirs."""
        decoded = [self.decode_padded(o) for o in outputs]
        boxes = torch.cat(
            [tta.mirror_xyxy(b, size[1]) if v.flip else b for (b, _, _), v in zip(decoded, views)],
            dim=1,
        )
        scores = torch.cat([s for _, s, _ in decoded], dim=1)
        labels = torch.cat([lab for _, _, lab in decoded], dim=1)
        merged = tta.merge_detections(boxes, scores, labels, self.nms_iou, self.max_detections)
        return {**outputs[0], "detections": merged}

    def decoded_outputs(
        self, outputs: Mapping[str, torch.Tensor], image_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """Decoded detections (NMS inside the graph): ``boxes``, ``scores``, ``labels`` (see
        :meth:`decode_padded`), boxes clipped to the input as ``predict`` clips them."""
        boxes, scores, labels = self.decode_padded(outputs)
        height, width = image_size
        limit = boxes.new_tensor([float(width), float(height)] * 2)
        boxes = torch.minimum(boxes.clamp(min=0.0), limit)
        return {"boxes": boxes, "scores": scores, "labels": labels}

    def predict_outputs(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Per image: ``detections``, each ``label``, ``class_name``, ``score`` and ``box``.

        ``box`` is ``[x_min, y_min, x_max, y_max]`` in pixels of the original image (from
        ``batch["orig_size"]``, ``(height, width)``; the network input's size when absent),
        clipped to the image; detections are sorted by score, best first. With ``batch["index"]``
        the result also carries ``index``, the sample's position in its dataset.
        """
        height, width = batch["image"].shape[-2:]
        results = []
        for k, found in enumerate(self.decode(outputs)):
            if "orig_size" in batch:
                orig_h, orig_w = (float(v) for v in batch["orig_size"][k])
            else:
                orig_h, orig_w = float(height), float(width)
            scale = torch.tensor([orig_w / width, orig_h / height] * 2)
            limit = torch.tensor([orig_w, orig_h] * 2)
            pixels = (found["boxes"].cpu() * scale).clamp(min=torch.zeros(4), max=limit)
            detections = self.detection_records({**found, "boxes": pixels})
            result: dict[str, Any] = {"detections": detections}
            if "index" in batch:  # the sample's index in its split: dataset.samples[index].path
                result["index"] = int(batch["index"][k])
            results.append(result)
        return results

    def detection_records(self, found: Mapping[str, torch.Tensor]) -> list[dict[str, Any]]:
        """Records of decoded detections whose ``boxes`` are already in pixels of the image:
        ``label``, ``class_name``, ``score`` and ``box`` ``[x_min, y_min, x_max, y_max]``."""
        return [
            {
                "label": int(label),
                "class_name": self.class_names[int(label)],
                "score": round(float(score), 4),
                "box": [round(float(v), 2) for v in box],
            }
            for box, score, label in zip(found["boxes"].cpu(), found["scores"], found["labels"])
        ]


def _targets(batch: Mapping[str, Any]) -> list[dict[str, torch.Tensor]]:
    """The batch's true boxes per image, as the mAP metric takes them."""
    return [
        {"boxes": boxes.float(), "labels": labels.long(), "iscrowd": crowd.bool()}
        for boxes, labels, crowd in zip(batch["boxes"], batch["labels"], _crowd(batch))
    ]


def _crowd(batch: Mapping[str, Any]) -> list[torch.Tensor]:
    """The batch's crowd flags per image (none crowd when a reader gives no flags)."""
    if "crowd" in batch:
        return list(batch["crowd"])
    return [torch.zeros(len(labels), dtype=torch.bool) for labels in batch["labels"]]
