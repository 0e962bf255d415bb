"""COCO box mAP as torchmetrics computes it, with thresholds and a process sync made exact.

:class:`CocoMeanAveragePrecision` is torchmetrics' ``MeanAveragePrecision`` (``bbox``, per-class
AP, the ``faster_coco_eval`` backend: pycocotools' COCOeval algorithm in C++, about four times
faster on the same numbers) with two changes:

- COCOeval's own IoU and recall thresholds. torchmetrics' defaults come from a float32
  ``linspace`` (a recall threshold of 0.49999997 instead of 0.5), which moves AP50 by ~1e-3 from
  COCOeval's wherever a recall lands on a threshold.
- A sync that takes any number of images per process. torchmetrics gathers its per-image list
  states one tensor at a time, so processes holding different numbers of images (an evaluation
  split that does not divide by the world size, read without repeated samples) issue different
  numbers of collective calls and hang or fail. Here each state is gathered in one call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch.distributed as dist
from torchmetrics.detection import MeanAveragePrecision

#: COCOeval's thresholds, computed as its ``Params`` computes them.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, round((0.95 - 0.5) / 0.05) + 1).tolist()
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, round(1.0 / 0.01) + 1).tolist()


class CocoMeanAveragePrecision(MeanAveragePrecision):
    """COCO box mAP (``map``, ``map_50``, ``map_75``, ``mar_100``, ``map_per_class`` ...).

    Args:
        **kwargs: other ``MeanAveragePrecision`` options (``max_detection_thresholds`` ...).
    """

    def __init__(self, **kwargs: Any) -> None:
        options = {
            "box_format": "xyxy",
            "iou_type": "bbox",
            "class_metrics": True,
            "backend": "faster_coco_eval",
            "iou_thresholds": IOU_THRESHOLDS,
            "rec_thresholds": RECALL_THRESHOLDS,
        }
        super().__init__(**{**options, **kwargs})

    def _sync_dist(self, dist_sync_fn: Any = None, process_group: Any = None) -> None:
        """Gather every list state from every process in one collective call per state."""
        group = process_group or self.process_group
        world_size = dist.get_world_size(group)
        for name in self._defaults:
            local = [tensor.cpu() for tensor in getattr(self, name)]
            gathered: list[Any] = [None] * world_size
            dist.all_gather_object(gathered, local, group=group)
            setattr(self, name, [tensor.to(self.device) for part in gathered for tensor in part])
