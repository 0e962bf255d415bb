"""Segmentation's view and report: the mask file and pixel counts, pixel accuracy of the worst."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from cvtasks.tasks.segmentation import SegmentationTask
from cvtasks.tasks.segmentation_report import SegmentationReport, SegmentationView
from cvtasks.viz.views import RecordContext


def test_the_segmentation_task_declares_its_view_report_and_dense_output():
    assert SegmentationTask.view is SegmentationView
    assert SegmentationTask.report is SegmentationReport
    assert SegmentationTask.dense_output is True


def test_the_segmentation_record_writes_the_mask_and_counts_its_pixels(tmp_path):
    mask = torch.tensor([[0, 0, 2], [2, 2, 1]])
    probabilities = torch.stack([(mask == c).float() for c in range(3)])
    result = {"mask": mask, "size": (2, 3), "probabilities": probabilities, "path": "a/b.png"}
    record = SegmentationView(None).record(result, RecordContext(tmp_path, "b"))
    means = record.pop("mean_probabilities")  # float32 means of the one-hot maps
    assert means == pytest.approx([2 / 6, 1 / 6, 3 / 6])
    assert record == {
        "size": [2, 3],
        "path": "a/b.png",
        "mask_file": "masks/b.png",
        "class_pixels": {"0": 2, "1": 1, "2": 3},
    }
    written = Image.open(tmp_path / "masks" / "b.png")
    assert written.mode == "P" and np.array_equal(np.asarray(written), mask.numpy())


def test_the_worst_images_have_the_least_pixel_accuracy_over_pixels_not_ignored():
    task = SimpleNamespace(view=SegmentationView, test_reports={})
    report = SegmentationReport(SimpleNamespace(task=task), [0.0] * 3, [1.0] * 3)
    mask = torch.tensor([[[0, 1], [1, 255]], [[255, 255], [255, 255]]])
    predicted = torch.tensor([[[0, 0], [1, 1]], [[0, 0], [0, 0]]])
    logits = torch.nn.functional.one_hot(predicted, 2).permute(0, 3, 1, 2).float()
    # image 0: 2 of its 3 labelled pixels right; image 1: no labelled pixel, none counted right
    assert report.scores(logits, {"mask": mask}).tolist() == pytest.approx([1 / 3, 1.0])
    assert report.caption({}, 1 / 3) == "pixel acc 0.67"
    assert report.charts({}) == {}  # the test loop stored no per-class IoU
