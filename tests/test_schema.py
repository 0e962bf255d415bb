"""The image-size check follows the task class's own ``dense_output``, plugin tasks included."""

import pytest
from omegaconf import DictConfig, OmegaConf

from cvtasks.registry import TASKS
from cvtasks.schema import check_image_size
from cvtasks.tasks.classification import ClassificationTask


class DenseClassification(ClassificationTask):
    """A task registered by a plugin that declares per-pixel outputs."""

    dense_output = True


def config(task: str, size: int) -> DictConfig:
    return OmegaConf.create(
        {"task": {"name": task}, "data": {"image_size": size}, "backbone": {"name": "resnet18"}}
    )


def test_a_task_declaring_dense_output_needs_a_divisible_size(monkeypatch):
    TASKS.names()  # the built-in tasks are registered before one is added for this test
    monkeypatch.setitem(TASKS._entries, "dense_plugin", DenseClassification)
    problem = check_image_size(config("dense_plugin", 50))
    assert problem == (
        "data.image_size=50: task dense_plugin needs a size divisible by 32 (the deepest "
        "feature reduction of backbone resnet18); try data.image_size=64"
    )
    assert check_image_size(config("dense_plugin", 64)) is None


@pytest.mark.parametrize(("task", "dense"), [("classification", False), ("segmentation", True)])
def test_built_in_tasks_declare_whether_their_output_is_dense(task, dense):
    assert TASKS.get(task).dense_output is dense
    assert (check_image_size(config(task, 50)) is not None) is dense
