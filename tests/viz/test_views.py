"""Views: JSON values of results, the plain view of a task without one, the task's own view."""

from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from cvtasks.tasks.base import TaskModule
from cvtasks.tasks.segmentation import SegmentationTask
from cvtasks.tasks.segmentation_report import SegmentationView
from cvtasks.viz.views import RecordContext, View, enlarge_factor, jsonable, view_for


def test_jsonable_and_enlarge_factor():
    value = {"t": torch.tensor([1.5]), "n": np.float32(2), "p": (1, np.arange(2))}
    assert jsonable(value) == {"t": [1.5], "n": 2.0, "p": [1, [0, 1]]}
    assert enlarge_factor((32, 20)) == 8 and enlarge_factor((640, 480)) == 1
    assert enlarge_factor((10, 0), target=128) == 12


def test_a_task_without_a_view_gets_plain_records_and_no_picture(tmp_path):
    task = SimpleNamespace(class_names=["a"])  # declares no view
    view = view_for(task)
    assert type(view) is View and view.task is task
    result = {"score": torch.tensor(0.25), "size": (3, 4)}
    assert view.record(result, RecordContext(tmp_path, "x")) == {"score": 0.25, "size": [3, 4]}
    assert view.picture(Image.new("RGB", (4, 3)), result) is None
    assert not any(tmp_path.iterdir())  # the plain view writes no side file
    assert TaskModule.view is View and TaskModule.report is None


def test_the_view_a_task_class_names_is_built_for_the_task():
    task = SimpleNamespace(view=SegmentationView, class_names=["bg", "disc"])
    view = view_for(task)
    assert isinstance(view, SegmentationView) and view.task is task
    assert SegmentationTask.view is SegmentationView
