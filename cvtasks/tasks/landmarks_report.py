"""What the after-training commands show of a landmarks model.

:class:`LandmarksView`: each image's picture in ``predict`` is its predicted points (and
skeleton) on the enlarged image. :class:`LandmarksReport`: ``evaluate`` ranks the test faces by
normalized mean error and draws the PCK curve over alpha.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from cvtasks.viz.charts import line_chart
from cvtasks.viz.keypoints import draw_keypoints
from cvtasks.viz.report import Report
from cvtasks.viz.views import View, enlarge_factor


class LandmarksView(View):
    """Records as JSON values; the picture draws the points, rings where confidence is low."""

    def picture(self, image: Image.Image, result: Mapping[str, Any]) -> Image.Image:
        """The points (and the task's skeleton) on the image enlarged when small."""
        scale = enlarge_factor(image.size)
        big = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
        points = np.asarray(result["keypoints"], dtype=np.float64) * scale
        skeleton = getattr(self.task, "skeleton", ())
        return draw_keypoints(big, points, result.get("confidence"), skeleton)


class LandmarksReport(Report):
    """Worst: largest normalized mean error. Chart: PCK over alpha."""

    ALPHAS: ClassVar[list[float]] = [k / 100 for k in range(0, 51)]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.errors: list[torch.Tensor] = []

    def scores(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        """Mean error of the visible points over the normalizer NME uses (eyes or box)."""
        # the targets go to the outputs' device (the head decodes there), the errors to the CPU
        device = next((v.device for v in outputs.values() if torch.is_tensor(v)), None)
        on_device = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
        pred, target, visible, norm = (
            t.cpu() for t in self.task.points_in_pixels(outputs, on_device)
        )
        errors = (pred - target).norm(dim=-1) / norm.clamp(min=1e-6)[:, None]
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
