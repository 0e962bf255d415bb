"""The evaluation report of a task: its charts and a grid of its worst test samples.

``python -m cvtasks evaluate`` builds the report a task names in its class (``report =
SegmentationReport`` on the :class:`~cvtasks.tasks.base.TaskModule` subclass) and shows it every
test batch once (raw network outputs and the batch). The report scores each sample by how wrong
it is, keeps the worst ones, and draws its task's charts (a confusion matrix, per-class IoU bars,
a PCK or ROC curve...). A task that names no report gets metrics only.
"""

from __future__ import annotations

import heapq
import itertools
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from cvtasks.viz.charts import image_grid
from cvtasks.viz.pairs import to_picture
from cvtasks.viz.views import view_for

if TYPE_CHECKING:
    from cvtasks.inference import Predictor


def batch_sample(batch: Mapping[str, Any], k: int) -> dict[str, Any]:
    """Sample ``k`` of a batch: its tensors' rows (on the CPU) and list items."""
    return {
        key: (value[k].cpu() if torch.is_tensor(value) else value[k])
        for key, value in batch.items()
        if (torch.is_tensor(value) and value.ndim > 0) or isinstance(value, list)
    }


class Report(ABC):
    """Base report: keeps the ``keep`` worst samples; subclasses score them and draw charts.

    Args:
        predictor: the inference path of the trained task (``predictor.task`` is the task).
        mean: normalization mean, to turn inputs back into pictures.
        std: normalization standard deviation.
        keep: how many worst samples to keep.
    """

    def __init__(
        self, predictor: Predictor, mean: list[float], std: list[float], keep: int = 16
    ) -> None:
        self.predictor, self.task = predictor, predictor.task
        self.view = view_for(self.task)
        self.mean, self.std, self.keep = mean, std, keep
        self._worst: list[tuple[float, int, dict[str, Any]]] = []
        self._counter = itertools.count()  # breaks ties between equal scores: first seen first

    @abstractmethod
    def scores(self, outputs: Any, batch: Mapping[str, Any]) -> torch.Tensor:
        """How wrong each sample of the batch is (higher: worse)."""

    def update(self, outputs: Any, batch: Mapping[str, Any]) -> None:
        """Score a batch and keep its samples that are among the worst so far."""
        for k, score in enumerate(self.scores(outputs, batch).float().cpu().tolist()):
            item = (score, next(self._counter), batch_sample(batch, k))
            if len(self._worst) < self.keep:
                heapq.heappush(self._worst, item)
            elif score > self._worst[0][0]:
                heapq.heapreplace(self._worst, item)

    def charts(self, metrics: Mapping[str, float]) -> dict[str, Image.Image]:
        """The task's charts by file stem (``confusion_matrix`` -> ``confusion_matrix.png``).

        Args:
            metrics: the ``test/*`` metrics of the task's test loop.
        """
        return {}

    def caption(self, sample: Mapping[str, Any], score: float) -> str:
        """A line under a worst sample's picture."""
        return f"score {score:.3f}"

    def picture(self, sample: Mapping[str, Any]) -> Image.Image:
        """The task's view of its prediction drawn on the (de-normalized) input image; the
        image alone when the view draws no picture."""
        image = to_picture(sample["image"], self.mean, self.std)
        result = self.predictor.predict({"image": sample["image"][None]})[0]
        return self.view.picture(image, result) or image

    def worst_grid(self) -> Image.Image | None:
        """The worst samples, worst first, with captions; ``None`` when there were none."""
        worst = sorted(self._worst, key=lambda item: -item[0])
        if not worst:
            return None
        pictures = [self.picture(sample) for _, _, sample in worst]
        captions = [self.caption(sample, score) for score, _, sample in worst]
        return image_grid(pictures, columns=4, captions=captions)
