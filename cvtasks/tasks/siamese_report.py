"""What the after-training commands show of a siamese model.

:class:`SiameseView`: a pair's picture (``predict pairs=FILE``) is both images with their
distance and verdict; single images get their embedding as a record and, from ``predict``'s
gallery search, a strip of their nearest identities. :class:`SiameseReport`: ``evaluate`` ranks
the test pairs by how far past the threshold a wrong verdict fell and draws the ROC curve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from PIL import Image

from cvtasks.viz.charts import line_chart
from cvtasks.viz.pairs import draw_pair, to_picture
from cvtasks.viz.report import Report
from cvtasks.viz.views import View, enlarge_factor


class SiameseView(View):
    """Records as JSON values; the picture of a pair shows distance and verdict."""

    def picture(self, image: Image.Image, result: Mapping[str, Any]) -> Image.Image:
        """A pair: both images with distance and verdict (``result["other"]`` is the second
        image, ``result["threshold"]`` the distance below which the two are the same)."""
        return draw_pair(
            image,
            result["other"],
            float(result["distance"]),
            result.get("threshold"),
            scale=enlarge_factor(image.size, 128),
        )


class SiameseReport(Report):
    """Worst: pairs judged wrong by the widest margin. Chart: ROC with the chosen threshold."""

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
