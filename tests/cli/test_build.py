"""A task refuses data whose annotations it cannot learn from, naming what fits, before the data
is prepared."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from cvtasks.cli.build import TARGET_KINDS, _made_kind, build_datamodule, check_target_kind
from cvtasks.config import ConfigError
from cvtasks.registry import DATASETS, TASKS

BUILTIN_TASKS = (
    "classification",
    "localization",
    "landmarks",
    "segmentation",
    "siamese",
    "detection",
    "multilabel",
)


class Gives:
    """A stand-in data module that declares only what its samples carry."""

    def __init__(self, kind: str | None) -> None:
        self.target_kind = kind


def test_every_builtin_data_set_feeds_a_builtin_task_and_every_task_has_data():
    made = {name: _made_kind(DATASETS.get(name)) for name in DATASETS.names()}
    builtin = {
        name: kind for name, kind in made.items() if DATASETS.origin(name).startswith("cvtasks.")
    }
    learned = {TASKS.get(name).target_kind for name in BUILTIN_TASKS}
    # None: a data module that learns its kind when built (shards, from its index)
    assert set(builtin.values()) - {None} == learned == set(TARGET_KINDS), builtin
    assert None not in {
        kind for name, kind in builtin.items() if ".builtin." in DATASETS.origin(name)
    }
    assert made["digits"] == "class" and made["image_folder"] == "class"
    assert {name for name, kind in made.items() if kind == "label_set"} >= {
        "digits_multilabel",
        "multilabel_csv",
        "coco_multilabel",
    }


def test_multilabel_on_one_label_per_image_names_the_data_and_task_that_fit():
    with pytest.raises(ConfigError) as caught:
        check_target_kind("multilabel", "digits", Gives("class"))
    message = str(caught.value)
    assert message.startswith(
        "task=multilabel needs data with a set of labels per image, "
        "but data=digits gives one label per image: use "
    )
    for fix in ("data=digits_multilabel", "data=multilabel_csv", "data=coco_multilabel"):
        assert fix in message
    assert "task=classification for data=digits" in message
    assert "data=image_folder" not in message and "task=detection" not in message
    assert "\n" not in message


def test_detection_on_masks_is_refused_the_same_way():
    with pytest.raises(ConfigError, match=r"task=detection needs data with a class and a box") as e:
        check_target_kind("detection", "shapes", Gives("mask"))
    assert "data=digits_detection" in str(e.value)
    assert "task=segmentation for data=shapes" in str(e.value)


@pytest.mark.parametrize(("task", "kind"), [("multilabel", "label_set"), ("multilabel", None)])
def test_matching_or_undeclared_data_passes(task, kind):
    check_target_kind(task, "any", Gives(kind))


def test_a_task_without_a_declared_kind_takes_any_data(monkeypatch):
    class Anything:
        """A plugin's task class that says nothing of its targets."""

    monkeypatch.setitem(TASKS._entries, "anything_plugin", Anything)
    check_target_kind("anything_plugin", "digits", Gives("class"))


def test_build_datamodule_refuses_before_preparing_the_data(tmp_path):
    root = tmp_path / "cache"
    cfg = OmegaConf.create(
        {"task": {"name": "multilabel"}, "data": {"name": "digits", "root": str(root)}}
    )
    with pytest.raises(ConfigError, match="task=multilabel needs data with a set of labels"):
        build_datamodule(cfg)
    assert not root.exists()  # nothing written for a run that could not train
