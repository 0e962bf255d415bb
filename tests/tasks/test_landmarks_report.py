"""Landmarks report: each face's mean visible-point error in NME's units; the PCK curve."""

from types import SimpleNamespace

import pytest
import torch

from cvtasks.tasks.landmarks import LandmarksTask
from cvtasks.tasks.landmarks_report import LandmarksReport, LandmarksView
from tests.tasks.test_landmarks import POINTS, FixedHead, batch, task


def test_the_landmarks_task_declares_its_view_and_report():
    assert LandmarksTask.view is LandmarksView
    assert LandmarksTask.report is LandmarksReport


def test_scores_are_each_faces_mean_error_over_its_visible_points():
    module = task()
    truth = POINTS.expand(2, 3, 2).clone()
    pred = truth.clone()
    pred[0, 2] += 0.3  # face 0: the nose far off, but hidden: it does not count
    pred[1, 2, 0] += 0.02  # face 1: the nose 4 px off in a 200 px wide frame
    module.net.head = FixedHead(pred, torch.ones(2, 3))
    faces = batch(truth)
    faces["visible"] = torch.tensor([[True, True, False], [True, True, True]])
    report = LandmarksReport(SimpleNamespace(task=module), [0.0] * 3, [1.0] * 3)
    # the eyes are 40 px apart in the original frame (0.2 of 200 px)
    assert report.scores({}, faces).tolist() == pytest.approx([0.0, 4 / 40 / 3], rel=1e-5)
    assert report.caption({}, 4 / 120) == "NME 0.033"

    # the chart: the share of the 5 visible points within alpha x 40 px
    (chart,) = report.charts({}).values()
    assert chart.size[0] > 0
    errors = torch.cat(report.errors)
    assert sorted(errors.tolist()) == pytest.approx([0, 0, 0, 0, 0.1], abs=1e-6)


def test_no_faces_no_chart():
    report = LandmarksReport(SimpleNamespace(task=task()), [0.0] * 3, [1.0] * 3)
    assert report.charts({}) == {}
