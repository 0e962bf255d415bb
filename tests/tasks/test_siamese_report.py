"""Siamese report: signed margins past the threshold, and the ROC over every distance."""

from types import SimpleNamespace

import pytest
import torch

from cvtasks.tasks.siamese import SiameseTask
from cvtasks.tasks.siamese_report import SiameseReport, SiameseView


def report(threshold: float) -> SiameseReport:
    """A report on a task whose embeddings are the inputs and distances Euclidean."""
    task = SimpleNamespace(
        view=SiameseView,
        threshold=torch.tensor(threshold),
        score=lambda a, b: (a - b).norm(dim=1),
    )
    predictor = SimpleNamespace(task=task, forward=lambda x: x)
    return SiameseReport(predictor, [0.0] * 3, [1.0] * 3)


def test_the_siamese_task_declares_its_view_and_report():
    assert SiameseTask.view is SiameseView and SiameseTask.report is SiameseReport
    assert SiameseTask.dense_output is False


def test_scores_are_how_far_a_wrong_verdict_lies_past_the_threshold():
    r = report(0.5)
    a = torch.zeros(4, 1)
    b = torch.tensor([[0.2], [0.9], [0.3], [0.6]])  # distances 0.2, 0.9, 0.3, 0.6
    same = torch.tensor([1, 1, 0, 0])
    scores = r.scores(a, {"image_b": b, "same": same})
    # same pairs: distance - threshold; different pairs: threshold - distance
    assert scores.tolist() == pytest.approx([-0.3, 0.4, 0.2, -0.1])


def test_roc_matches_counting_accepted_pairs_at_every_distance():
    r = report(0.45)
    distance = torch.tensor([0.1, 0.7, 0.3, 0.5, 0.9, 0.2])
    same = torch.tensor([1, 1, 0, 1, 0, 0])
    r.scores(torch.zeros(6, 1), {"image_b": distance[:, None], "same": same})
    far, tar = r.roc()
    expected_far, expected_tar = [0.0], [0.0]
    for t in distance.sort().values:  # accept every pair at most t apart
        accept = distance <= t
        expected_tar.append(float((accept & same.bool()).sum() / same.sum()))
        expected_far.append(float((accept & ~same.bool()).sum() / (1 - same).sum()))
    assert far == pytest.approx(expected_far) and tar == pytest.approx(expected_tar)
    assert list(r.charts({"test/auc": 0.5})) == ["roc_curve"]
