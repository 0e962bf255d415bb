"""What the after-training commands show of an object-detection model.

:class:`DetectionView`: ``predict`` writes each image's detections (class, name, score, box in
pixels of the file) and draws every box scored at least :data:`SHOWN_SCORE` in its class colour
with a ``"name score"`` tag.
:class:`DetectionReport`: ``evaluate`` ranks the test images by ``1 - F1`` of their detections
at IoU 0.5, draws the precision-recall curve of every class at IoU 0.5 (``pr_curves.png``, with
the mean over classes) and the AP of each class (``ap_per_class.png``); the worst grid shows
the predicted boxes solid and the true ones dashed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from PIL import Image
from torchvision.ops import box_area, box_iou

from cvtasks.metrics.detection import CocoMeanAveragePrecision
from cvtasks.viz.boxes import class_colour, draw_detections
from cvtasks.viz.charts import bar_chart, curves_chart
from cvtasks.viz.pairs import to_picture
from cvtasks.viz.report import Report
from cvtasks.viz.views import RecordContext, View, enlarge_factor, jsonable

#: the IoU at which the report matches detections to objects, scores images and draws curves.
MATCH_IOU = 0.5
#: the least score of a detection drawn in a picture or counted in an image's F1 (the task's
#: ``score_threshold`` when higher). The threshold that keeps recall for mAP (0.05) also keeps
#: low-scored duplicates of each object under other classes, which hide the boxes in a picture
#: and rank every image as poor; ``predictions.jsonl`` and the metrics keep them all.
SHOWN_SCORE = 0.3
#: legend name of the mean precision-recall curve over the classes.
MEAN_CURVE = "mean (all classes)"


def detection_record(detection: Mapping[str, Any]) -> dict[str, Any]:
    """One detection as JSON values: ``label``, ``class_name``, ``score`` (4 decimals) and
    ``box`` (2 decimals), then any other keys the task adds."""
    record = {
        "label": int(detection["label"]),
        "class_name": str(detection["class_name"]),
        "score": round(float(detection["score"]), 4),
        "box": [round(float(v), 2) for v in detection["box"]],
    }
    return {**record, **{k: jsonable(v) for k, v in detection.items() if k not in record}}


class DetectionView(View):
    """Records list every detection; the picture draws them in their class colours."""

    def record(self, result: Mapping[str, Any], ctx: RecordContext) -> dict[str, Any]:
        """The image's ``detections`` (best first, as the task ranks them) and its ``index``."""
        record = jsonable({k: v for k, v in result.items() if k != "detections"})
        return {"detections": [detection_record(d) for d in result["detections"]], **record}

    def picture(self, image: Image.Image, result: Mapping[str, Any]) -> Image.Image:
        """Every box scored at least :data:`SHOWN_SCORE` with its tag, on the image enlarged
        when small."""
        least = shown_score(self.task)
        shown = [d for d in result["detections"] if float(d["score"]) >= least]
        return draw_detections(image, shown, scale=enlarge_factor(image.size))


def shown_score(task: Any) -> float:
    """The least score of a detection in pictures and image scores (see :data:`SHOWN_SCORE`)."""
    return max(SHOWN_SCORE, float(getattr(task, "score_threshold", 0.0)))


class MatchCounts(NamedTuple):
    """Detections matched to objects (``true_positives``), unmatched detections
    (``false_positives``) and objects no detection matched (``missed``)."""

    true_positives: int
    false_positives: int
    missed: int

    @property
    def f1(self) -> float:
        """``2 TP / (2 TP + FP + FN)``; 1 for an image without objects or detections."""
        wrong = self.false_positives + self.missed
        return 1.0 if wrong == 0 else 2 * self.true_positives / (2 * self.true_positives + wrong)


def match_detections(
    detections: Mapping[str, torch.Tensor],
    boxes: torch.Tensor,
    labels: torch.Tensor,
    crowd: torch.Tensor | None = None,
    iou_threshold: float = MATCH_IOU,
) -> MatchCounts:
    """Match one image's detections to its objects greedily, best score first, as COCO does.

    A detection matches the not yet matched object of its class that it overlaps most, when
    that IoU is at least ``iou_threshold``. Crowd objects are no objects to find: a detection
    that matches none but lies inside a crowd box of its class (intersection over the
    detection's area at least ``iou_threshold``) counts neither way.

    Args:
        detections: ``boxes float[D, 4]`` (xyxy), ``scores float[D]``, ``labels int[D]``.
        boxes: the true boxes ``float[N, 4]`` (xyxy, same pixels as the detections).
        labels: their classes ``int[N]``.
        crowd: ``bool[N]``, objects to ignore (COCO iscrowd, VOC difficult); none when ``None``.
        iou_threshold: the least IoU of a match.
    """
    crowd = torch.zeros_like(labels, dtype=torch.bool) if crowd is None else crowd.bool()
    found, found_labels = boxes[~crowd].float(), labels[~crowd]
    crowds, crowd_labels = boxes[crowd].float(), labels[crowd]
    order = detections["scores"].argsort(descending=True)
    det_boxes, det_labels = detections["boxes"].float()[order], detections["labels"][order]
    iou = box_iou(det_boxes, found)
    iou[det_labels[:, None] != found_labels[None, :]] = -1.0  # a match needs the same class
    inside = _intersection(det_boxes, crowds) / box_area(det_boxes).clamp(min=1e-9)[:, None]
    inside[det_labels[:, None] != crowd_labels[None, :]] = -1.0
    taken = torch.zeros(len(found), dtype=torch.bool)
    hits = wrong = 0
    for d in range(len(det_boxes)):
        overlap = iou[d].masked_fill(taken, -1.0)
        if len(found) and overlap.max() >= iou_threshold:
            taken[overlap.argmax()] = True
            hits += 1
        elif not (len(crowds) and inside[d].max() >= iou_threshold):
            wrong += 1
    return MatchCounts(hits, wrong, len(found) - hits)


def _intersection(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection areas ``[len(a), len(b)]`` of xyxy boxes."""
    left_top = torch.maximum(a[:, None, :2], b[None, :, :2])
    right_bottom = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    return (right_bottom - left_top).clamp(min=0).prod(dim=-1)


class DetectionReport(Report):
    """Worst: ``1 - F1`` at IoU 0.5. Charts: precision-recall per class, AP per class.

    The curves come from torchmetrics' COCO evaluation of every decoded detection (its
    ``precision`` array at IoU 0.5, all object sizes, the most detections per image); the
    image scores count only detections scored at least :data:`SHOWN_SCORE`, as the pictures
    draw them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.average_precision = CocoMeanAveragePrecision(extended_summary=True)
        self.images = 0

    def _detections(self, outputs: Any) -> list[dict[str, torch.Tensor]]:
        """The task's decoded detections (input pixels), on the CPU."""
        return [
            {
                "boxes": d["boxes"].float().cpu(),
                "scores": d["scores"].float().cpu(),
                "labels": d["labels"].long().cpu(),
            }
            for d in self.task.decode(outputs)
        ]

    def scores(self, outputs: Any, batch: Mapping[str, Any]) -> torch.Tensor:
        """``1 - F1`` per image of the detections above the score threshold at IoU 0.5
        (crowd objects excluded); 0 for a perfect image."""
        detections = self._detections(outputs)
        targets = [
            {
                "boxes": batch["boxes"][k].float().cpu(),
                "labels": batch["labels"][k].long().cpu(),
                "iscrowd": _crowd(batch, k).long(),
            }
            for k in range(len(detections))
        ]
        self.average_precision.update(detections, targets)
        self.images += len(detections)
        threshold = shown_score(self.task)
        badness = []
        for det, target in zip(detections, targets):
            keep = det["scores"] >= threshold
            counts = match_detections(
                {key: value[keep] for key, value in det.items()},
                target["boxes"],
                target["labels"],
                target["iscrowd"].bool(),
            )
            badness.append(1.0 - counts.f1)
        return torch.tensor(badness)

    def precision_recall(
        self,
    ) -> tuple[dict[str, tuple[list[float], list[float]]], dict[str, float | None]]:
        """COCO's interpolated precision over recall at IoU 0.5, from every update so far.

        Returns:
            The curve ``(recall, precision)`` of each class with test objects, and their mean
            as :data:`MEAN_CURVE`; each class's AP at IoU 0.5 (the curve's mean over COCO's 101
            recall steps), ``None`` for a class without test objects.
        """
        names = list(self.task.class_names)
        ap: dict[str, float | None] = dict.fromkeys(names)
        if not self.images:
            return {}, ap
        result = self.average_precision.compute()
        thresholds = self.average_precision.iou_thresholds
        t = min(range(len(thresholds)), key=lambda i: abs(thresholds[i] - MATCH_IOU))
        precision = result["precision"][t, :, :, 0, -1].float()  # [recall steps, classes]
        recall = torch.linspace(0.0, 1.0, precision.shape[0]).tolist()
        curves: dict[str, tuple[list[float], list[float]]] = {}
        with_objects = []
        for column, label in enumerate(result["classes"].tolist()):
            values = precision[:, column]
            if (values < 0).all():  # COCO's -1: the class has no test object
                continue
            with_objects.append(column)
            curves[names[label]] = (recall, values.tolist())
            ap[names[label]] = float(values.mean())
        if with_objects:
            curves[MEAN_CURVE] = (recall, precision[:, with_objects].mean(dim=1).tolist())
        return curves, ap

    def charts(self, metrics: Mapping[str, float]) -> dict[str, Image.Image]:
        """``pr_curves`` (each class with test objects, and their mean) and ``ap_per_class``
        (the AP at IoU 0.5 under each curve; "n/a" for a class without test objects)."""
        curves, ap = self.precision_recall()
        if not curves:
            return {}
        names = list(self.task.class_names)
        colours = {name: class_colour(names.index(name)) for name in curves if name in names}
        pr = curves_chart(
            curves, "precision-recall at IoU 0.5 (test)", "recall", "precision", colours, MEAN_CURVE
        )
        bars = bar_chart(ap, "AP at IoU 0.5 per class (test)", "AP50")
        return {"pr_curves": pr, "ap_per_class": bars}

    def caption(self, sample: Mapping[str, Any], score: float) -> str:
        """How many objects the image holds and the F1 of its detections."""
        objects = int((~_crowd(sample)).sum())
        return f"{objects} object{'' if objects == 1 else 's'}, F1 {1.0 - score:.2f}"

    def picture(self, sample: Mapping[str, Any]) -> Image.Image:
        """Detections above the score threshold (solid, tagged) and true objects (dashed)."""
        image = to_picture(sample["image"], self.mean, self.std)
        det = self._detections(self.predictor.forward(sample["image"][None]))[0]
        keep = det["scores"] >= shown_score(self.task)
        names = list(self.task.class_names)
        detections = [
            {"label": int(label), "class_name": names[int(label)], "score": float(s), "box": box}
            for box, s, label in zip(
                det["boxes"][keep].tolist(), det["scores"][keep], det["labels"][keep]
            )
        ]
        crowd = _crowd(sample)
        truth = [
            {"label": int(label), "box": box}
            for box, label in zip(sample["boxes"][~crowd].tolist(), sample["labels"][~crowd])
        ]
        return draw_detections(image, detections, truth, scale=enlarge_factor(image.size))


def _crowd(batch: Mapping[str, Any], k: int | None = None) -> torch.Tensor:
    """The crowd flags of image ``k`` of a batch (or of one sample when ``k`` is ``None``);
    all false when the batch has none."""
    boxes = batch["boxes"] if k is None else batch["boxes"][k]
    crowd = batch.get("crowd")
    if crowd is None:
        return torch.zeros(len(boxes), dtype=torch.bool)
    return (crowd if k is None else crowd[k]).bool().cpu()
