"""What the after-training commands show of a segmentation model.

:class:`SegmentationView`: ``predict`` writes each image's class map as a palette PNG under
``masks/`` (a JSON line cannot hold it) and pictures the coloured classes over the image.
:class:`SegmentationReport`: ``evaluate`` ranks the test images by pixel accuracy and draws the
per-class IoU of the test loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cvtasks.data.masks import write_mask
from cvtasks.ops.masks import IGNORE_INDEX
from cvtasks.viz.charts import bar_chart
from cvtasks.viz.masks import draw_segmentation
from cvtasks.viz.report import Report
from cvtasks.viz.views import RecordContext, View, enlarge_factor, jsonable


class SegmentationView(View):
    """The class map goes to ``masks/<name>.png``; the picture overlays it on the image."""

    def record(self, result: Mapping[str, Any], ctx: RecordContext) -> dict[str, Any]:
        """The record names the mask file and counts each class's pixels; per-class
        probabilities (with ``task.predict_probabilities``) become their means."""
        mask = np.asarray(
            result["mask"].cpu() if torch.is_tensor(result["mask"]) else result["mask"]
        )
        mask_file = Path("masks") / f"{ctx.name}.png"
        (ctx.output / mask_file).parent.mkdir(parents=True, exist_ok=True)
        write_mask(ctx.output / mask_file, mask.astype(np.uint8))
        counts = np.bincount(mask.reshape(-1), minlength=1)
        record = {k: jsonable(v) for k, v in result.items() if k not in ("mask", "probabilities")}
        record["mask_file"] = mask_file.as_posix()
        record["class_pixels"] = {str(k): int(c) for k, c in enumerate(counts) if c}
        if "probabilities" in result:  # per-class maps are too big for a JSON line: their means
            record["mean_probabilities"] = result["probabilities"].float().mean(dim=(1, 2)).tolist()
        return record

    def picture(self, image: Image.Image, result: Mapping[str, Any]) -> Image.Image:
        """The image beside its coloured class map (enlarged when small)."""
        names = getattr(self.task, "class_names", None)
        scale = enlarge_factor(image.size)
        return draw_segmentation(image, result["mask"], None, names, scale=scale)


class SegmentationReport(Report):
    """Worst: least pixel accuracy. Chart: per-class IoU bars of the test loop."""

    def scores(self, outputs: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """``1 -`` pixel accuracy of each image (ignored pixels left out)."""
        mask = batch["mask"].to(outputs.device)
        valid = mask != IGNORE_INDEX
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
