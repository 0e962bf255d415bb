"""What the after-training commands show of a multi-label model.

:class:`MultilabelView`: each image's picture in ``predict`` is the image under the names of
the classes found in it. :class:`MultilabelReport`: ``evaluate`` ranks the test images by their
binary cross-entropy and draws the per-class average precision of the test loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from cvtasks.viz.boxes import draw_box
from cvtasks.viz.charts import bar_chart
from cvtasks.viz.report import Report
from cvtasks.viz.views import View, enlarge_factor


class MultilabelView(View):
    """Records as JSON values; the picture tags the image with the classes found."""

    def picture(self, image: Image.Image, result: Mapping[str, Any]) -> Image.Image:
        """The image, enlarged when small, under ``name probability`` of each class found."""
        found = [f"{r['class_name']} {float(r['probability']):.2f}" for r in result["labels"]]
        label = ", ".join(found) if found else "none"
        return draw_box(image, None, label, scale=enlarge_factor(image.size))


class MultilabelReport(Report):
    """Worst: highest binary cross-entropy. Chart: per-class AP of the test loop."""

    def scores(self, outputs: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """Each image's binary cross-entropy, summed over the classes."""
        targets = batch["labels"].to(outputs.device).float()
        loss = F.binary_cross_entropy_with_logits(outputs.float(), targets, reduction="none")
        return loss.sum(dim=1)

    def charts(self, metrics: Mapping[str, float]) -> dict[str, Image.Image]:
        """Per-class AP (``None`` for a class no test image has)."""
        ap = self.task.test_reports.get("per_class_ap")
        if not ap:
            return {}
        return {"per_class_ap": bar_chart(ap, "per-class average precision (test)", "AP")}

    def caption(self, sample: Mapping[str, Any], score: float) -> str:
        """The true classes."""
        names = [self.task.class_names[i] for i in sample["labels"].nonzero()[:, 0].tolist()]
        return "true " + (", ".join(names) if names else "none")
