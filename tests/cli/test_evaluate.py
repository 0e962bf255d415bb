"""Evaluating on data whose names differ from the model's: renumber when reordered, else refuse."""

from types import SimpleNamespace

import pytest
import torch

from cvtasks.cli.evaluate import RemappedTargets, match_names
from tests.conftest import run_cvtasks


def model(label_names=None, **hparams):
    task = SimpleNamespace(hparams=hparams)
    if label_names is not None:
        task.label_names = label_names
    return SimpleNamespace(task=task)


def data(**names):
    return SimpleNamespace(**names)


def test_the_same_names_in_the_same_order_need_nothing():
    names = ["cat", "dog", "eel"]
    assert match_names(model(class_names=names), data(class_names=list(names)), "x") == {}


def test_other_names_are_refused_naming_both_lists():
    with pytest.raises(ValueError) as err:
        match_names(model(class_names=["cat", "dog"]), data(class_names=["ant", "bee"]), "mine")
    message = str(err.value)
    assert "data=mine has class names ['ant', 'bee']" in message
    assert "trained on ['cat', 'dog']" in message


def test_reordered_class_labels_are_renumbered_into_the_models_order():
    remap = match_names(
        model(class_names=["cat", "dog", "eel"]), data(class_names=["eel", "cat", "dog"]), "x"
    )
    samples = [{"label": torch.tensor(i)} for i in range(3)]
    renamed = RemappedTargets(samples, remap)
    assert [int(renamed[i]["label"]) for i in range(3)] == [2, 0, 1]  # eel, cat, dog


def test_localization_keeps_nothing_at_zero_and_shifts_the_classes():
    trained = model(label_names=["nothing", "cat", "dog"], class_names=["cat", "dog"])
    remap = match_names(trained, data(class_names=["dog", "cat"]), "x")
    renamed = RemappedTargets([{"label": torch.tensor(i)} for i in range(3)], remap)
    assert [int(renamed[i]["label"]) for i in range(3)] == [0, 2, 1]


def test_mask_values_are_renumbered_and_ignored_pixels_stay():
    remap = match_names(
        model(class_names=["bg", "circle", "square"]),
        data(class_names=["bg", "square", "circle"]),
        "x",
    )
    mask = torch.tensor([[0, 1, 2, 255]])
    out = RemappedTargets([{"mask": mask}], remap)[0]["mask"]
    assert out.tolist() == [[0, 2, 1, 255]] and out.dtype == mask.dtype


def test_reordered_keypoints_move_to_the_models_point_order():
    remap = match_names(
        model(keypoint_names=["eye_l", "eye_r", "nose"]),
        data(keypoint_names=["nose", "eye_l", "eye_r"]),
        "x",
    )
    points = torch.tensor([[0.5, 0.9], [0.3, 0.4], [0.7, 0.4]])  # nose, eye_l, eye_r
    visible = torch.tensor([True, False, True])
    sample = RemappedTargets([{"keypoints": points, "visible": visible}], remap)[0]
    assert torch.equal(sample["keypoints"], points[[1, 2, 0]])
    assert sample["visible"].tolist() == [False, True, True]


def test_skipped_samples_pass_through():
    remap = match_names(model(class_names=["a", "b"]), data(class_names=["b", "a"]), "x")
    assert RemappedTargets([None], remap)[0] is None


@pytest.mark.slow
def test_sigterm_during_the_evaluation_exits_143_and_writes_nothing(tiny_checkpoint, tmp_path):
    ckpt = tiny_checkpoint("segmentation")
    proc = run_cvtasks(
        "evaluate",
        f"ckpt={ckpt}",
        f"output={tmp_path / 'evaluation'}",
        "+trainer.limit_test_batches=2",
        "+trainer.callbacks=[{_target_: tests.e2e.inject_phases.SigtermInTest}]",
        cwd=tmp_path,
    )
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert "error: stopped by SIGTERM; run the command again" in proc.stderr
    assert not (tmp_path / "evaluation" / "metrics.json").exists()


def test_a_data_root_named_by_the_checkpoint_is_never_created(tmp_path):
    from cvtasks.cli.evaluate import data_config

    missing = tmp_path / "elsewhere" / "digits"
    trained = SimpleNamespace(data={"name": "digits", "root": str(missing), "image_size": 32})
    with pytest.raises(ValueError, match=r"data.root=.* does not exist here: pass data=digits"):
        data_config(trained, {})
    assert not missing.exists()
    chosen = data_config(trained, {"name": "digits", "root": str(tmp_path)})
    assert chosen == {"name": "digits", "root": str(tmp_path), "image_size": 32}


def test_a_task_without_a_report_gets_metrics_only(tmp_path):
    from cvtasks.cli.evaluate import write_plots

    trained = SimpleNamespace(task=SimpleNamespace(test_reports={}), task_name="plain")
    # no data is read and no picture written: the task names no report
    assert write_plots(trained, None, {"test/loss": 0.5}, None, tmp_path, 3) == []
    assert not any(tmp_path.iterdir())


def test_data_the_model_cannot_score_is_refused_before_it_is_prepared(tiny_checkpoint, tmp_path):
    from cvtasks.cli.common import load_trained
    from cvtasks.cli.evaluate import build_test_data
    from cvtasks.config import ConfigError

    model = load_trained(tiny_checkpoint("classification"))
    root = tmp_path / "shapes"
    chosen = {"name": "shapes", "root": str(root)}
    with pytest.raises(ConfigError, match=r"task=classification needs data with one label per"):
        build_test_data(model, chosen)
    assert not root.exists()  # the built-in data was never written
