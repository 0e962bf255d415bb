import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score

from cvtasks.tasks.multilabel import MultilabelTask
from tests.tasks.test_base import TinyBackbone

NAMES = ["cat", "dog", "car", "tree"]


def make_task(**kw):
    torch.manual_seed(0)
    return MultilabelTask(backbone=TinyBackbone(), num_classes=4, class_names=NAMES, **kw)


def random_batch(n=50, seed=0):
    gen = torch.Generator().manual_seed(seed)
    targets = (torch.rand(n, 4, generator=gen) > 0.6).float()
    targets[0] = 1.0  # every class has a positive: AP is defined for each
    # scores that lean towards the truth, so the metrics are far from both 0 and 1
    logits = torch.randn(n, 4, generator=gen) + 1.5 * (2 * targets - 1)
    return logits, targets


def test_map_and_f1_match_scikit_learn():
    task = make_task(threshold=0.6)
    logits, targets = random_batch()
    for part in range(0, 50, 20):  # several updates, as an epoch makes them
        rows = slice(part, part + 20)
        task.update_metrics(task.val_metrics, logits[rows], {"labels": targets[rows]})
    values = task.val_metrics.compute()
    probs, truth = logits.sigmoid().numpy(), targets.numpy().astype(int)
    predicted = (probs > 0.6).astype(int)
    ap = average_precision_score(truth, probs, average="macro")
    assert values["val/map"].item() == pytest.approx(ap, abs=1e-5)
    micro = f1_score(truth, predicted, average="micro")
    macro = f1_score(truth, predicted, average="macro")
    assert values["val/f1_micro"].item() == pytest.approx(micro, abs=1e-6)
    assert values["val/f1_macro"].item() == pytest.approx(macro, abs=1e-6)
    assert 0.3 < ap < 0.99 and 0.3 < micro < 0.99  # informative, not a degenerate case


def test_per_class_ap_of_the_test_loop_matches_scikit_learn():
    task = make_task()
    logits, targets = random_batch(seed=3)
    targets[:, 3] = 0.0  # no test image has a tree: its AP is undefined
    task.on_test_epoch_start()
    task.after_step(logits, {"labels": targets}, "test")
    task.on_test_epoch_end()
    per_class = task.test_reports["per_class_ap"]
    assert list(per_class) == NAMES
    expected = average_precision_score(
        targets[:, :3].numpy(), logits[:, :3].sigmoid().numpy(), average=None
    )
    np.testing.assert_allclose([per_class[n] for n in NAMES[:3]], expected, atol=1e-5)
    assert per_class["tree"] is None


def test_loss_is_the_configured_one():
    logits, targets = random_batch()
    bce = make_task().compute_loss(logits, {"labels": targets})
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    torch.testing.assert_close(bce, expected)
    asl = make_task(loss={"name": "asl"}).compute_loss(logits, {"labels": targets})
    assert asl.item() < bce.item()  # easy negatives are down-weighted


def test_predict_lists_the_classes_above_threshold_most_probable_first():
    task = make_task(threshold=0.5)
    probs = torch.tensor([[0.9, 0.2, 0.7, 0.5], [0.1, 0.3, 0.2, 0.4]])
    out = task.predict_outputs(torch.logit(probs), {"path": ["a.png", "b.png"]})
    assert [r["class_name"] for r in out[0]["labels"]] == ["cat", "car"]
    assert [r["label"] for r in out[0]["labels"]] == [0, 2]
    assert out[0]["labels"][0]["probability"] == pytest.approx(0.9, abs=1e-6)
    assert out[0]["probabilities"] == pytest.approx([0.9, 0.2, 0.7, 0.5], abs=1e-6)
    assert out[1]["labels"] == [] and out[1]["path"] == "b.png"


def test_single_label_data_is_refused_with_the_fix():
    logits, _ = random_batch()
    with pytest.raises(
        ValueError, match=r"task=multilabel needs data with a set of labels.*data=multilabel_csv"
    ):
        make_task().compute_loss(logits, {"label": torch.zeros(50, dtype=torch.long)})


def test_threshold_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match=r"task\.threshold must be in \(0, 1\), got 1.0"):
        make_task(threshold=1.0)


def test_checkpoint_hyperparameters_rebuild_the_task():
    task = MultilabelTask(
        backbone={"name": "lenet5"},
        num_classes=4,
        class_names=NAMES,
        loss={"name": "asl", "gamma_neg": 2.0},
        threshold=0.3,
    )
    again = MultilabelTask(**task.hparams)
    assert again.threshold == 0.3 and again.loss_fn.name == "asl" and again.loss_fn.gamma_neg == 2
    assert again.class_names == NAMES and again.monitor == "val/map"
