"""Per-task evaluation plots: what each task's test results look like, and its worst samples.

A :class:`Report` sees every test batch once (raw network outputs and the batch), scores each
sample by how wrong it is, keeps the worst ones, and draws its task's charts: a confusion matrix
(classification, localization), per-class IoU bars (segmentation), the PCK curve over alpha
(landmarks), the ROC curve with the chosen threshold (siamese). Reports are registered by task
name (:data:`REPORTS`); a task without one gets metrics only.
"""

from __future__ import annotations

import heapq
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from PIL import Image

from cvtasks.cli.render import enlarge_factor, view_for
from cvtasks.inference import Predictor
from cvtasks.losses.boxes import cxcywh_to_xyxy, paired_box_iou
from cvtasks.metrics.landmarks import landmark_normalizer
from cvtasks.viz.charts import bar_chart, confusion_chart, image_grid, line_chart
from cvtasks.viz.pairs import draw_pair, to_picture


def _sample(batch: Mapping[str, Any], k: int) -> dict[str, Any]:
    """Sample ``k`` of a batch: its tensors' rows (on the CPU) and list items."""
    return {
        key: (value[k].cpu() if torch.is_tensor(value) else value[k])
        for key, value in batch.items()
        if (torch.is_tensor(value) and value.ndim > 0) or isinstance(value, list)
    }


class Report(ABC):
    """Base report: keeps the ``keep`` worst samples; subclasses score them and draw charts.

    Args:
        predictor: the inference path of the trained task.
        mean: normalization mean, to turn inputs back into pictures.
        std: normalization standard deviation.
        keep: how many worst samples to keep.
    """

    task_name: ClassVar[str] = ""

    def __init__(
        self, predictor: Predictor, mean: list[float], std: list[float], keep: int = 16
    ) -> None:
        self.predictor, self.task = predictor, predictor.task
        self.mean, self.std, self.keep = mean, std, keep
        self._worst: list[tuple[float, int, dict[str, Any]]] = []
        self._counter = itertools.count()

    @abstractmethod
    def scores(self, outputs: Any, batch: Mapping[str, Any]) -> torch.Tensor:
        """How wrong each sample of the batch is (higher: worse)."""

    def update(self, outputs: Any, batch: Mapping[str, Any]) -> None:
        """Score a batch and keep its samples that are among the worst so far."""
        for k, score in enumerate(self.scores(outputs, batch).float().cpu().tolist()):
            item = (score, next(self._counter), _sample(batch, k))
            if len(self._worst) < self.keep:
                heapq.heappush(self._worst, item)
            elif score > self._worst[0][0]:
                heapq.heapreplace(self._worst, item)

    def charts(self, metrics: Mapping[str, float]) -> dict[str, Image.Image]:
        """The task's charts by file stem."""
        return {}

    def caption(self, sample: Mapping[str, Any], score: float) -> str:
        """A line under a worst sample's picture."""
        return f"score {score:.3f}"

    def picture(self, sample: Mapping[str, Any]) -> Image.Image:
        """The task's prediction drawn on the (de-normalized) input image."""
        image = to_picture(sample["image"], self.mean, self.std)
        result = self.predictor.predict({"image": sample["image"][None]})[0]
        return view_for(self.task_name).picture(image, result, self.task)

    def worst_grid(self) -> Image.Image | None:
        """The worst samples, worst first, with captions; ``None`` when there were none."""
        worst = sorted(self._worst, key=lambda item: -item[0])
        if not worst:
            return None
        pictures = [self.picture(sample) for _, _, sample in worst]
        captions = [self.caption(sample, score) for score, _, sample in worst]
        return image_grid(pictures, columns=4, captions=captions)


class ClassificationReport(Report):
    """Worst: least probability of the true class. Chart: the test confusion matrix."""

    task_name = "classification"

    def scores(self, outputs: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """``1 - p(true class)``."""
        probs = outputs.float().softmax(dim=1)
        return 1.0 - probs.gather(1, batch["label"][:, None].to(probs.device))[:, 0]

    def charts(self, metrics: Mapping[str, float]) -> dict[str, Image.Image]:
        """The confusion matrix the task accumulated in its test loop."""
        report = self.task.test_reports.get("confusion_matrix")
        if not report:
            return {}
        return {"confusion_matrix": confusion_chart(report["matrix"], report["classes"])}

    def caption(self, sample: Mapping[str, Any], score: float) -> str:
        """The true class."""
        return f"true {self.task.class_names[int(sample['label'])]}"


class LocalizationReport(Report):
    """Worst: wrong class or poor box. Chart: confusion matrix over *nothing* + C classes."""

    task_name = "localization"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        n = len(self.task.label_names)
        self.matrix = torch.zeros(n, n, dtype=torch.int64)

    def scores(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        """``1 - p(true class)`` plus ``1 - IoU`` for images that hold an object."""
        probs = outputs["logits"].float().softmax(dim=1).cpu()
        label = batch["label"].cpu()
        n = self.matrix.shape[0]
        self.matrix += torch.bincount(label * n + probs.argmax(1), minlength=n * n).view(n, n)
        pred = cxcywh_to_xyxy(outputs["box"].float().cpu())
        iou = paired_box_iou(pred, cxcywh_to_xyxy(batch["box"].float().cpu()))
        return (1.0 - probs.gather(1, label[:, None])[:, 0]) + (label > 0) * (1.0 - iou)

    def charts(self, metrics: Mapping[str, float]) -> dict[str, Image.Image]:
        """Confusion matrix of the predicted class (label 0: *nothing*)."""
        chart = confusion_chart(self.matrix.tolist(), self.task.label_names)
        return {"confusion_matrix": chart}

    def caption(self, sample: Mapping[str, Any], score: float) -> str:
        """The true class."""
        return f"true {self.task.label_names[int(sample['label'])]}"


class SegmentationReport(Report):
    """Worst: least pixel accuracy. Chart: per-class IoU bars of the test loop."""

    task_name = "segmentation"

    def scores(self, outputs: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """``1 -`` pixel accuracy of each image (ignored pixels left out)."""
        mask = batch["mask"].to(outputs.device)
        valid = mask != 255
        right = ((outputs.argmax(dim=1) == mask) & valid).flatten(1).sum(1)
        return 1.0 - right / valid.flatten(1).sum(1).clamp(min=1)

    def charts(self, metrics: Mapping[str, float]) -> dict[str, Image.Image]:
        """Per-class IoU (``None`` for a class absent from masks and predictions)."""
        iou = self.task.test_reports.get("per_class_iou")
        if not iou:
            return {}
        return {"per_class_iou": bar_chart(iou, "per-class IoU (test)", "IoU")}

    def caption(self, sample: Mapping[str, Any], score: float) -> str:
        """The pixel accuracy."""
        return f"pixel acc {1 - score:.2f}"


class LandmarksReport(Report):
    """Worst: largest normalized mean error. Chart: PCK over alpha."""

    task_name = "landmarks"
    ALPHAS: ClassVar[list[float]] = [k / 100 for k in range(0, 51)]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.errors: list[torch.Tensor] = []

    def scores(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        """Mean error of the visible points over the normalizer NME uses (eyes or box)."""
        task = self.task
        pred, _ = task.head.decode(outputs)
        cpu = {k: v.cpu() for k, v in batch.items() if torch.is_tensor(v)}
        scale = task._original_scale(cpu)
        target, visible = cpu["keypoints"].float() * scale, cpu["visible"].bool()
        box = cpu["box"][:, 2:].float() * scale[:, 0] if "box" in cpu else None
        norm = landmark_normalizer(target, visible, box, task.eyes).clamp(min=1e-6)
        errors = (pred.float().cpu() * scale - target).norm(dim=-1) / norm[:, None]
        self.errors.append(errors[visible])
        per_image = (errors * visible).sum(1) / visible.sum(1).clamp(min=1)
        return per_image

    def charts(self, metrics: Mapping[str, float]) -> dict[str, Image.Image]:
        """The share of visible points within alpha x normalizer, for alpha in [0, 0.5]."""
        if not self.errors:
            return {}
        errors = torch.cat(self.errors)
        pck = [float((errors <= a).float().mean()) for a in self.ALPHAS]
        alpha = self.task.pck_alpha
        at = float((errors <= alpha).float().mean())
        chart = line_chart(
            self.ALPHAS, pck, "PCK over alpha (test)", "alpha", "PCK", (alpha, at, f"{at:.3f}")
        )
        return {"pck_curve": chart}

    def caption(self, sample: Mapping[str, Any], score: float) -> str:
        """The normalized mean error."""
        return f"NME {score:.3f}"


class SiameseReport(Report):
    """Worst: pairs judged wrong by the widest margin. Chart: ROC with the chosen threshold."""

    task_name = "siamese"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.distances: list[torch.Tensor] = []
        self.same: list[torch.Tensor] = []

    def scores(self, outputs: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """Signed distance past the threshold: positive when the verdict is wrong."""
        other = self.predictor.forward(batch["image_b"])
        with torch.inference_mode():
            distance = self.task.score(outputs.float(), other.float()).float().cpu()
        same = batch["same"].cpu().bool()
        self.distances.append(distance)
        self.same.append(same)
        threshold = float(self.task.threshold)
        threshold = threshold if math.isfinite(threshold) else float(distance.median())
        return torch.where(same, distance - threshold, threshold - distance)

    def roc(self) -> tuple[list[float], list[float]]:
        """False and true accept rates at every distance threshold, from accepting none."""
        distance, same = torch.cat(self.distances), torch.cat(self.same)
        order = distance.argsort()
        hits = same[order].float()
        tar = torch.cat([torch.zeros(1), hits.cumsum(0) / hits.sum().clamp(min=1)])
        far = torch.cat([torch.zeros(1), (1 - hits).cumsum(0) / (1 - hits).sum().clamp(min=1)])
        return far.tolist(), tar.tolist()

    def charts(self, metrics: Mapping[str, float]) -> dict[str, Image.Image]:
        """ROC curve with the point of the stored threshold marked."""
        if not self.distances:
            return {}
        far, tar = self.roc()
        distance, same = torch.cat(self.distances), torch.cat(self.same)
        threshold = float(self.task.threshold)
        accept = distance <= threshold
        point = (
            float((accept & ~same).sum() / (~same).sum().clamp(min=1)),
            float((accept & same).sum() / same.sum().clamp(min=1)),
            f"threshold {threshold:.3f}",
        )
        auc = metrics.get("test/auc")
        title = "ROC (test pairs)" + (f", AUC {auc:.3f}" if auc is not None else "")
        mark = point if math.isfinite(threshold) else None
        return {"roc_curve": line_chart(far, tar, title, "FAR", "TAR", mark, diagonal=True)}

    def picture(self, sample: Mapping[str, Any]) -> Image.Image:
        """The pair with distance, verdict and truth."""
        pair = {"image": sample["image"][None], "image_b": sample["image_b"][None]}
        distance = float(self.predictor.predict(pair)[0]["distance"])
        threshold = float(self.task.threshold)
        image = to_picture(sample["image"], self.mean, self.std)
        return draw_pair(
            image,
            to_picture(sample["image_b"], self.mean, self.std),
            distance,
            threshold if math.isfinite(threshold) else None,
            bool(sample["same"]),
            scale=enlarge_factor(image.size, 96),
        )

    def caption(self, sample: Mapping[str, Any], score: float) -> str:
        """The truth."""
        return "same" if bool(sample["same"]) else "different"


REPORTS: dict[str, type[Report]] = {
    cls.task_name: cls
    for cls in (
        ClassificationReport,
        LocalizationReport,
        SegmentationReport,
        LandmarksReport,
        SiameseReport,
    )
}
