"""Top-k accuracy whose updates only queue work on the device.

torchmetrics' ``MulticlassAccuracy(top_k=k, average="micro")`` (the tests' oracle) one-hot
encodes the targets with ``F.one_hot``, which on some devices (the CPU among them) first reads
the labels' range back to the host. :class:`TopKAccuracy` compares indices instead, for the
training metrics, whose updates run inside every training step.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric


class TopKAccuracy(Metric):
    """The share of samples whose true class is among the ``k`` highest scores.

    ``update(preds, target)`` with scores ``float[B, C]`` and class indices ``int64[B]``.

    Args:
        k: how many of the highest scores count (at most ``C``).
        **kwargs: ``torchmetrics.Metric`` options.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, k: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if k < 1:
            raise ValueError(f"top-k accuracy needs k >= 1, got {k}")
        self.k = int(k)
        self.add_state("correct", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Count a batch."""
        if preds.ndim != 2 or target.shape != preds.shape[:1]:
            raise ValueError(
                f"preds must be [B, C] scores and target [B], got {tuple(preds.shape)} and "
                f"{tuple(target.shape)}"
            )
        if self.k > preds.shape[1]:
            raise ValueError(f"top-{self.k} accuracy needs at least {self.k} classes")
        top = preds.topk(self.k, dim=1).indices
        hits = (top == target[:, None]).any(dim=1)
        # Out of place: a state reset under inference mode may not be changed in place outside it.
        self.correct = self.correct + hits.sum()
        self.total = self.total + target.shape[0]

    def compute(self) -> torch.Tensor:
        """The share of hits (0 before any update)."""
        return self.correct.float() / self.total.clamp(min=1).float()
