"""Localization report: wrong class plus poor box ranks the worst; the confusion matrix counts."""

from types import SimpleNamespace

import pytest
import torch

from cvtasks.tasks.localization import LocalizationTask
from cvtasks.tasks.localization_report import LocalizationReport, LocalizationView


def test_the_localization_task_declares_its_view_and_report():
    assert LocalizationTask.view is LocalizationView
    assert LocalizationTask.report is LocalizationReport


def test_scores_add_the_missing_probability_and_the_missing_overlap():
    task = SimpleNamespace(view=LocalizationView, label_names=["nothing", "cat", "dog"])
    report = LocalizationReport(SimpleNamespace(task=task), [0.0] * 3, [1.0] * 3)
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
    outputs = {
        "logits": probs.log(),
        # (cx, cy, w, h): image 1's box is its truth shifted by half a width; image 2's exact
        "box": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.6, 0.5, 0.2, 0.2], [0.3, 0.3, 0.2, 0.2]]),
    }
    batch = {
        "label": torch.tensor([0, 1, 1]),
        "box": torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.2, 0.2]]),
    }
    iou = (0.1 * 0.2) / (2 * 0.04 - 0.1 * 0.2)  # overlap of two 0.2 squares shifted by 0.1
    expected = [1 - 0.7, (1 - 0.6) + (1 - iou), 1 - 0.2]  # no box counted for *nothing*
    assert report.scores(outputs, batch).tolist() == pytest.approx(expected, abs=1e-5)
    # rows: truth, columns: predicted class (arg-max)
    assert report.matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    assert report.caption({"label": torch.tensor(2)}, 0.0) == "true dog"
