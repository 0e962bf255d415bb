"""Pair verification: accuracy at a threshold, ROC AUC and TAR at a fixed FAR.

A pair of images is judged "same person" when the distance of their embeddings is at most a
threshold (seed 001 §6.6, Fig 6.17: "same if the output ... is greater than a threshold, or
otherwise different", with distance in place of the comparison network's probability). The threshold
is chosen where it classifies the most pairs right; LFW's protocol chooses it on 9 of 10 folds and
scores the 10th (:func:`kfold_accuracy`). ROC AUC and TAR at a FAR come from torchmetrics
(``binary_auroc`` and ``binary_sensitivity_at_specificity``, the functional forms of ``BinaryAUROC``
and ``BinarySensitivityAtSpecificity``), fed with ``-distance`` so that higher means "more alike".
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_sensitivity_at_specificity,
)
from torchmetrics.utilities import dim_zero_cat


def far_key(far: float) -> str:
    """The metric name of TAR at ``far``: ``1e-2`` → ``"tar@far1e-2"``."""
    mantissa, exponent = f"{far:.0e}".split("e")
    return f"tar@far{mantissa}e{int(exponent)}"


def accuracy_at(distance: torch.Tensor, same: torch.Tensor, threshold: float) -> float:
    """Share of pairs judged right when ``distance <= threshold`` means "same"."""
    return float(((distance <= threshold) == same.bool()).float().mean())


def best_threshold(distance: torch.Tensor, same: torch.Tensor) -> tuple[float, float]:
    """The threshold that classifies the most pairs right, and that accuracy.

    Candidates lie halfway between consecutive distinct distances, plus one below all of them
    (every pair "different") and the largest distance (every pair "same"); the smallest best one
    wins.

    Args:
        distance: ``[N]`` pair distances.
        same: ``[N]``, 1 for pairs of one person.

    Returns:
        ``(threshold, accuracy)``.
    """
    d, order = torch.sort(distance.float())
    s = same.bool()[order].double()
    n = len(d)
    n_diff = n - s.sum()
    # cut after position i: pairs 0..i are called same
    correct = torch.cat([n_diff[None], s.cumsum(0) + n_diff - (1 - s).cumsum(0)])
    valid = torch.ones(n + 1, dtype=torch.bool)
    valid[1:n] = d[1:] > d[:-1]  # no cut inside a run of equal distances
    # Thresholds in float32, the distances' precision, so that "<=" cuts exactly where meant;
    # a midpoint that rounds onto the upper distance falls back to the lower one.
    middle = ((d[:-1].double() + d[1:].double()) / 2).float()
    middle = torch.where(middle < d[1:], middle, d[:-1])
    below = torch.nextafter(d[:1], torch.tensor([-math.inf]))
    thresholds = torch.cat([below, middle, d[-1:]])
    best = int(torch.argmax(torch.where(valid, correct, torch.full_like(correct, -1.0))))
    return float(thresholds[best]), float(correct[best] / n)


def kfold_accuracy(
    distance: torch.Tensor, same: torch.Tensor, folds: int = 10, seed: int = 0
) -> float:
    """LFW-style accuracy: each fold is scored at the threshold chosen on the other folds.

    Args:
        distance: ``[N]`` pair distances.
        same: ``[N]`` labels.
        folds: number of folds (at least 2, at most N).
        seed: seed of the (fixed) assignment of pairs to folds.

    Returns:
        The mean of the per-fold accuracies.
    """
    n = len(distance)
    folds = max(2, min(int(folds), n))
    generator = torch.Generator().manual_seed(seed)
    fold_of = torch.empty(n, dtype=torch.long)
    fold_of[torch.randperm(n, generator=generator)] = torch.arange(n) % folds
    scores = []
    for k in range(folds):
        held = fold_of == k
        threshold, _ = best_threshold(distance[~held], same[~held])
        scores.append(accuracy_at(distance[held], same[held], threshold))
    return sum(scores) / folds


def tar_at_far(distance: torch.Tensor, same: torch.Tensor, far: float = 1e-2) -> float:
    """True accept rate at the strictest threshold whose false accept rate is at most ``far``.

    TAR is the ROC's sensitivity and ``1 - FAR`` its specificity: torchmetrics'
    ``binary_sensitivity_at_specificity`` of ``-distance`` at ``min_specificity = 1 - far``.

    Args:
        distance: ``[N]`` pair distances.
        same: ``[N]`` labels.
        far: the largest share of different pairs that may be accepted.

    Returns:
        The largest TPR over ROC points with ``FPR <= far`` (``nan`` without both classes).
    """
    if not _both_classes(same):
        return math.nan
    tar, _ = binary_sensitivity_at_specificity(-distance.float(), same.long(), 1.0 - far)
    return float(tar)


def roc_auc(distance: torch.Tensor, same: torch.Tensor) -> float:
    """Area under the ROC curve of ``-distance`` (``nan`` without both classes)."""
    if not _both_classes(same):
        return math.nan
    return float(binary_auroc(-distance.float(), same.long()))


def _both_classes(same: torch.Tensor) -> bool:
    return bool(same.bool().any()) and bool((~same.bool()).any())


class PairVerification(Metric):
    """Verification accuracy, ROC AUC and TAR@FAR of pair distances, synced across processes.

    Args:
        far: the false accept rate of the TAR metric.
        folds: with no fixed ``threshold``, the accuracy is :func:`kfold_accuracy` over this many
            folds (``folds <= 1``: the best threshold's accuracy on all pairs, an optimistic one).
        threshold: a threshold fixed beforehand (e.g. chosen on validation pairs); the accuracy
            is then measured at it. It may be set or cleared between epochs.
        **kwargs: torchmetrics ``Metric`` options.

    ``compute()`` returns ``verification_acc``, ``auc``, ``tar@far<far>`` and ``threshold``: the
    fixed threshold, or the best one over all pairs of this epoch.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self, far: float = 1e-2, folds: int = 10, threshold: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 < far < 1.0:
            raise ValueError(f"task.far must be in (0, 1), got {far}")
        self.far = float(far)
        self.folds = int(folds)
        self.threshold = threshold
        self.add_state("distance", default=[], dist_reduce_fx="cat")
        self.add_state("same", default=[], dist_reduce_fx="cat")

    def update(self, distance: torch.Tensor, same: torch.Tensor) -> None:
        """Add a batch of pair distances ``[N]`` and same/different labels ``[N]``."""
        if distance.shape != same.shape:
            raise ValueError(
                f"distance {tuple(distance.shape)} and same {tuple(same.shape)} differ"
            )
        self.distance.append(distance.detach().float())
        self.same.append(same.detach().long())

    def compute(self) -> dict[str, torch.Tensor]:
        """The metrics of every pair seen since the last reset."""
        distance = dim_zero_cat(self.distance).cpu()
        same = dim_zero_cat(self.same).cpu()
        if self.threshold is not None and math.isfinite(self.threshold):
            threshold = float(self.threshold)
            accuracy = accuracy_at(distance, same, threshold)
        else:
            threshold, accuracy = best_threshold(distance, same)
            if self.folds > 1 and len(distance) >= self.folds:
                accuracy = kfold_accuracy(distance, same, self.folds)
        values = {
            "verification_acc": accuracy,
            "auc": roc_auc(distance, same),
            far_key(self.far): tar_at_far(distance, same, self.far),
            "threshold": threshold,
        }
        return {key: torch.tensor(value, dtype=torch.float32) for key, value in values.items()}
