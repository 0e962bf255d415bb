"""A task plugin: classification that shows how confident it is, in its own records and plots.

Loaded by path (``'plugins=[tests/e2e/confidence_task.py]'``) in the end-to-end test of plugin
tasks: its view and report replace those of the classification it builds on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from PIL import Image, ImageDraw

from cvtasks.registry import TASKS
from cvtasks.tasks.classification import ClassificationTask
from cvtasks.viz.charts import bar_chart
from cvtasks.viz.report import Report
from cvtasks.viz.views import RecordContext, View

BAR_HEIGHT = 6  # pixels of the confidence bar under each picture
BAR_COLOUR = (255, 0, 0)
BINS = 5  # of the confidence histogram


class ConfidenceView(View):
    """A record of the class and its confidence; a picture with a bar as long as the confidence."""

    def record(self, result: Mapping[str, Any], ctx: RecordContext) -> dict[str, Any]:
        return {"class_name": result["class_name"], "confidence": float(result["probability"])}

    def picture(self, image: Image.Image, result: Mapping[str, Any]) -> Image.Image:
        canvas = Image.new("RGB", (image.width, image.height + BAR_HEIGHT), "white")
        canvas.paste(image.convert("RGB"))
        length = round(float(result["probability"]) * image.width)
        if length:
            box = [0, image.height, length - 1, image.height + BAR_HEIGHT - 1]
            ImageDraw.Draw(canvas).rectangle(box, fill=BAR_COLOUR)
        return canvas


class ConfidenceReport(Report):
    """Worst: least confident. Chart: the share of test images per confidence bin."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counts = torch.zeros(BINS, dtype=torch.int64)

    def scores(self, outputs: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        confidence = outputs.float().softmax(dim=1).max(dim=1).values.cpu()
        self.counts += torch.bincount(
            (confidence * BINS).long().clamp(max=BINS - 1), minlength=BINS
        )
        return 1.0 - confidence

    def charts(self, metrics: Mapping[str, float]) -> dict[str, Image.Image]:
        shares = (self.counts / self.counts.sum().clamp(min=1)).tolist()
        bins = {f"{k / BINS:.1f}-{(k + 1) / BINS:.1f}": s for k, s in enumerate(shares)}
        return {"confidence_histogram": bar_chart(bins, "confidence (test)", "share")}


@TASKS.register("confidence_classification")
class ConfidenceClassificationTask(ClassificationTask):
    """Classification whose predictions and plots show its confidence."""

    view = ConfidenceView
    report = ConfidenceReport
