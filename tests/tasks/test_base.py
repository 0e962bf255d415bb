import pytest
import torch
from torch import nn

from cvtasks.tasks.base import class_names_for
from cvtasks.tasks.classification import ClassificationTask
from cvtasks.training.speed import check_compile


class TinyBackbone(nn.Module):
    """A minimal backbone that honours the contract, for task tests."""

    def __init__(self, in_chans: int = 3, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.feature_info = [{"num_chs": width, "reduction": 2, "module": "stem"}]
        self.num_features = width

    def forward_features(self, x):
        return [self.stem(x)]


def make_task(**kw):
    return ClassificationTask(backbone=TinyBackbone(), num_classes=4, **kw)


def test_unknown_scheduler_and_compile_values_name_the_key():
    with pytest.raises(ValueError, match=r"task.scheduler.name='poly'.*cosine"):
        make_task(scheduler={"name": "poly"})
    with pytest.raises(ValueError, match="compile='fastest'"):
        check_compile("fastest")
    assert check_compile(True) is True and check_compile("max-autotune") == "max-autotune"


def test_weight_decay_spares_biases_and_norm_parameters():
    task = make_task()
    decay, no_decay = task.parameter_groups(0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(task.parameters()))


def test_channels_last_and_compile_keep_state_dict_keys():
    task = make_task(channels_last=True, compile=True)
    keys = set(task.state_dict())
    task.configure_model()
    task.configure_model()  # idempotent
    assert set(task.state_dict()) == keys
    assert all("_orig_mod" not in k for k in keys)
    conv = task.backbone.stem[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    out = task(torch.randn(2, 3, 16, 16))  # compiled forward on a tiny model
    assert out.shape == (2, 4)


def test_class_names_are_checked_and_default_to_indices():
    assert class_names_for(3, None) == ["0", "1", "2"]
    assert class_names_for(2, None, first=1) == ["1", "2"]
    assert class_names_for(2, ("cat", "dog")) == ["cat", "dog"]
    with pytest.raises(ValueError, match="3 class names given for 2 classes"):
        class_names_for(2, ["a", "b", "c"])
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        class_names_for(0, None)


def test_training_updates_skip_value_checks_that_wait_for_the_device():
    task = ClassificationTask(backbone={"name": "lenet5"}, num_classes=10)
    assert not any(getattr(m, "validate_args", False) for m in task.train_metrics.values())
    assert all(m.validate_args for m in task.val_metrics.values())
    bad_label = torch.tensor([12])  # out of range: the checked split names it
    with pytest.raises(RuntimeError, match=r"Detected more unique values|num_classes|out of"):
        task.val_metrics.update(torch.randn(1, 10), bad_label)
    # the training split's scores (some counted by ConfusionScore) equal the checked ones
    task.val_metrics.reset()
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        logits, labels = torch.randn(16, 10, generator=g), torch.randint(0, 10, (16,), generator=g)
        task.train_metrics.update(logits, labels)
        task.val_metrics.update(logits, labels)
    train, val = task.train_metrics.compute(), task.val_metrics.compute()
    assert set(train) == {k.replace("val/", "train/") for k in val}
    for key, value in val.items():
        torch.testing.assert_close(train[key.replace("val/", "train/")], value)


@pytest.mark.parametrize(
    "name", ["classification", "localization", "landmarks", "segmentation", "siamese", "detection"]
)
def test_every_built_in_task_declares_its_view_and_report_beside_itself(name):
    from cvtasks.registry import TASKS

    task = TASKS.get(name)
    companion = f"cvtasks.tasks.{name}_report"
    assert task.view.__module__ == companion and task.report.__module__ == companion
    assert task.dense_output is (name in ("segmentation", "detection"))


def test_export_outputs_name_a_single_tensor_logits_and_keep_a_dict_of_outputs():
    task = make_task()
    logits = torch.zeros(2, 4)
    assert list(task.export_outputs(logits)) == ["logits"]
    assert task.export_outputs(logits)["logits"] is logits
    outputs = {"logits": logits, "box": torch.ones(2, 4)}
    named = task.export_outputs(outputs)
    assert list(named) == ["logits", "box"] and all(named[k] is outputs[k] for k in outputs)


def test_export_metrics_score_raw_and_decoded_outputs_alike():
    """Raw outputs go through update_metrics (the base class); decoded ones through the task's
    own update (probabilities): two of three right either way."""
    task = make_task()
    logits = torch.tensor([[3.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 1.0]])
    batch = {"label": torch.tensor([0, 1, 2])}
    for decoded, outputs in (
        (False, task.export_outputs(logits)),
        (True, task.decoded_outputs(logits, (8, 8))),
    ):
        metrics = task.make_export_metrics()
        task.update_export_metrics(metrics, outputs, batch, decoded)
        assert float(metrics.compute()["acc"]) == pytest.approx(2 / 3)
