"""Classification report: the probability left to the true class ranks the worst; the chart is the
test confusion matrix the task accumulated."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from cvtasks.tasks.classification import ClassificationTask
from cvtasks.tasks.classification_report import ClassificationReport, ClassificationView


def test_the_classification_task_declares_its_view_and_report():
    assert ClassificationTask.view is ClassificationView
    assert ClassificationTask.report is ClassificationReport


def make_report(test_reports):
    task = SimpleNamespace(
        view=ClassificationView, class_names=["cat", "dog", "owl"], test_reports=test_reports
    )
    return ClassificationReport(SimpleNamespace(task=task), [0.0] * 3, [1.0] * 3)


def test_scores_are_one_minus_the_true_class_probability():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 2])
    expected = 1 - F.softmax(logits, dim=1)[torch.arange(3), labels]
    scores = make_report({}).scores(logits, {"label": labels})
    assert scores.tolist() == pytest.approx(expected.tolist(), abs=1e-6)
    assert make_report({}).caption({"label": torch.tensor(1)}, 0.5) == "true dog"


def test_the_chart_is_the_confusion_matrix_and_none_without_one():
    assert make_report({}).charts({}) == {}
    matrix = {"matrix": [[3, 1, 0], [0, 4, 0], [1, 0, 2]], "classes": ["cat", "dog", "owl"]}
    charts = make_report({"confusion_matrix": matrix}).charts({})
    assert list(charts) == ["confusion_matrix"] and charts["confusion_matrix"].size[0] > 0
