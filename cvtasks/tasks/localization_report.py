"""What the after-training commands show of a localization model.

:class:`LocalizationView`: each image's picture in ``predict`` is the predicted box and class
drawn on the image. :class:`LocalizationReport`: ``evaluate`` ranks the test images by a wrong
class and a poor box, and draws the confusion matrix over *nothing* and the classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from PIL import Image

from cvtasks.ops.boxes import cxcywh_to_xyxy, paired_box_iou
from cvtasks.viz.boxes import draw_prediction
from cvtasks.viz.charts import confusion_chart
from cvtasks.viz.report import Report
from cvtasks.viz.views import View, enlarge_factor


class LocalizationView(View):
    """Records as JSON values; the picture draws the predicted box and class."""

    def picture(self, image: Image.Image, result: Mapping[str, Any]) -> Image.Image:
        """The prediction on the image (enlarged when small)."""
        return draw_prediction(image, result, scale=enlarge_factor(image.size))


class LocalizationReport(Report):
    """Worst: wrong class or poor box. Chart: confusion matrix over *nothing* + C classes."""

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
