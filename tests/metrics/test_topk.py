"""Top-k accuracy against torchmetrics' micro top-k accuracy."""

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy

from cvtasks.metrics import TopKAccuracy


@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k_accuracy_equals_torchmetrics_over_several_batches(k):
    g = torch.Generator().manual_seed(k)
    ours, oracle = TopKAccuracy(k=k), MulticlassAccuracy(num_classes=7, top_k=k, average="micro")
    for n in (5, 16, 1):
        scores, labels = torch.randn(n, 7, generator=g), torch.randint(0, 7, (n,), generator=g)
        ours.update(scores, labels)
        oracle.update(scores, labels)
    torch.testing.assert_close(ours.compute(), oracle.compute())
    assert 0 < float(ours.compute()) < 1


def test_top_k_accuracy_by_hand_and_bad_input():
    metric = TopKAccuracy(k=2)
    scores = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.07, 0.03], [0.2, 0.3, 0.5]])
    metric.update(scores, torch.tensor([2, 1, 0]))  # 2nd best, 2nd best, last
    assert float(metric.compute()) == pytest.approx(2 / 3)
    assert float(TopKAccuracy().compute()) == 0.0
    with pytest.raises(ValueError, match="at least 5 classes"):
        TopKAccuracy(k=5).update(scores, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\[B, C\] scores and target \[B\]"):
        metric.update(scores, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="k >= 1"):
        TopKAccuracy(k=0)
