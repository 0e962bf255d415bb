"""ConfusionScore against torchmetrics' multiclass metrics, the oracle it follows."""

import pytest
import torch
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassJaccardIndex,
)

from cvtasks.metrics.confusion import ConfusionScore

ORACLES = {
    "accuracy": lambda **kw: MulticlassAccuracy(average="micro", **kw),
    "f1": lambda **kw: MulticlassF1Score(average="macro", **kw),
    "iou": lambda **kw: MulticlassJaccardIndex(average="macro", **kw),
}


def batches(num_classes, shape, count, ignore_index=None, seed=0):
    """Score tensors and targets; class ``num_classes - 1`` never occurs nor wins."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(count):
        scores = torch.randn(shape[0], num_classes, *shape[1:], generator=g)
        scores[:, -1] = -1e9  # never predicted ...
        target = torch.randint(0, num_classes - 1, shape, generator=g)  # ... and never present
        if ignore_index is not None:
            target[torch.rand(shape, generator=g) < 0.2] = ignore_index
        yield scores, target


@pytest.mark.parametrize("score", list(ORACLES))
@pytest.mark.parametrize(
    ("shape", "ignore_index"), [((16,), None), ((2, 8, 8), 255), ((2, 8, 8), 0)]
)
def test_scores_equal_torchmetrics_over_several_batches(score, shape, ignore_index):
    ours = ConfusionScore(6, score, ignore_index=ignore_index)
    oracle = ORACLES[score](num_classes=6, ignore_index=ignore_index)
    for scores, target in batches(6, shape, 3, ignore_index):
        ours.update(scores, target)
        oracle.update(scores, target)
    torch.testing.assert_close(ours.compute(), oracle.compute(), atol=1e-6, rtol=1e-6)


def test_class_indices_and_perfect_and_wrong_predictions():
    target = torch.tensor([0, 1, 2, 2])
    perfect = ConfusionScore(3, "iou")
    perfect.update(target, target)
    assert float(perfect.compute()) == 1.0
    wrong = ConfusionScore(3, "f1")
    wrong.update((target + 1) % 3, target)
    assert float(wrong.compute()) == 0.0
    half = ConfusionScore(3, "accuracy")
    half.update(torch.tensor([0, 1, 0, 0]), target)
    assert float(half.compute()) == 0.5


def test_nothing_counted_scores_zero_and_reset_clears():
    metric = ConfusionScore(3, "iou", ignore_index=255)
    metric.update(torch.tensor([1, 2]), torch.tensor([255, 255]))
    assert float(metric.compute()) == 0.0
    metric.update(torch.tensor([1]), torch.tensor([1]))
    assert float(metric.compute()) == 1.0
    metric.reset()
    assert int(metric.counts.sum()) == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="score must be one of"):
        ConfusionScore(3, "dice")
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        ConfusionScore(0, "iou")
    with pytest.raises(ValueError, match="must match"):
        ConfusionScore(3, "iou").update(torch.tensor([0, 1]), torch.tensor([0, 1, 2]))
