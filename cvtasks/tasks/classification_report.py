"""What the after-training commands show of a classification model.

:class:`ClassificationView`: each image's picture in ``predict`` is the image with the predicted
class and its probability. :class:`ClassificationReport`: ``evaluate`` ranks the test images by
the probability left to their true class and draws the test confusion matrix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from PIL import Image

from cvtasks.viz.boxes import draw_box
from cvtasks.viz.charts import confusion_chart
from cvtasks.viz.report import Report
from cvtasks.viz.views import View, enlarge_factor


class ClassificationView(View):
    """Records as JSON values; the picture tags the image with class and probability."""

    def picture(self, image: Image.Image, result: Mapping[str, Any]) -> Image.Image:
        """The image, enlarged when small, under a ``class probability`` tag."""
        label = f"{result['class_name']} {float(result['probability']):.2f}"
        return draw_box(image, None, label, scale=enlarge_factor(image.size))


class ClassificationReport(Report):
    """Worst: least probability of the true class. Chart: the test confusion matrix."""

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
