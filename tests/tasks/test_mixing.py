"""Mixup/CutMix of classification batches: the same images and targets as timm's ``Mixup``, by
hand for mixup, the soft-target loss in the training step, and the config's errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy

from cvtasks.tasks.classification import ClassificationTask
from cvtasks.tasks.mixing import build_mixup, mix_batch
from tests.tasks.test_base import TinyBackbone

NUM_CLASSES = 5


def batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(size)
    images = torch.randn(size, 3, 16, 16, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (size,), generator=generator)
    return images, labels


def smoothed_one_hot(labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    off = smoothing / NUM_CLASSES
    return F.one_hot(labels, NUM_CLASSES).float() * (1.0 - smoothing) + off


@pytest.mark.parametrize(
    "cfg",
    [
        {"mixup_alpha": 0.8},
        {"cutmix_alpha": 1.0},
        {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "switch_prob": 0.5, "mode": "elem"},
        {"mixup_alpha": 0.4, "cutmix_alpha": 1.0, "mode": "pair", "prob": 0.7},
    ],
)
def test_images_and_targets_equal_timms_mixup_on_the_same_seed(cfg):
    images, labels = batch(8)
    ours = build_mixup(cfg, NUM_CLASSES, label_smoothing=0.1)
    # an alpha left out is 0, as in timm's train.py (its Mixup class defaults mixup_alpha to 1)
    full = {"mixup_alpha": 0.0, "cutmix_alpha": 0.0, **cfg}
    theirs = Mixup(num_classes=NUM_CLASSES, label_smoothing=0.1, **full)
    for seed in range(5):
        np.random.seed(seed)
        got_images, got_targets = mix_batch(ours, images.clone(), labels)
        np.random.seed(seed)
        want_images, want_targets = theirs(images.clone(), labels)
        torch.testing.assert_close(got_images, want_images, rtol=0, atol=0)
        torch.testing.assert_close(got_targets, want_targets, rtol=0, atol=0)
        torch.testing.assert_close(got_targets.sum(1), torch.ones(8))


def test_mixup_blends_images_and_smoothed_targets_with_the_reversed_batch():
    images, labels = batch(6)
    mixup = build_mixup({"mixup_alpha": 0.8}, NUM_CLASSES, label_smoothing=0.1)
    np.random.seed(3)
    mixed, targets = mix_batch(mixup, images.clone(), labels)
    np.random.seed(3)
    assert np.random.rand() < 1.0  # timm draws whether to mix (prob 1), then lambda
    lam = float(np.random.beta(0.8, 0.8))
    assert 0.0 < lam < 1.0
    torch.testing.assert_close(mixed, lam * images + (1 - lam) * images.flip(0))
    one_hot = smoothed_one_hot(labels, 0.1)
    torch.testing.assert_close(targets, lam * one_hot + (1 - lam) * one_hot.flip(0))


def test_odd_batch_mixes_all_but_the_last_image():
    images, labels = batch(7)
    mixup = build_mixup({"mixup_alpha": 1.0}, NUM_CLASSES, label_smoothing=0.2)
    theirs = Mixup(num_classes=NUM_CLASSES, mixup_alpha=1.0, label_smoothing=0.2)
    np.random.seed(0)
    mixed, targets = mix_batch(mixup, images.clone(), labels)
    np.random.seed(0)
    want_images, want_targets = theirs(images[:6].clone(), labels[:6])
    torch.testing.assert_close(mixed[:6], want_images)
    torch.testing.assert_close(targets[:6], want_targets)
    torch.testing.assert_close(mixed[6], images[6])
    torch.testing.assert_close(targets[6], smoothed_one_hot(labels[6:], 0.2)[0])


def test_training_step_loss_is_soft_target_cross_entropy_on_the_mixed_batch(monkeypatch):
    torch.manual_seed(0)
    task = ClassificationTask(
        backbone=TinyBackbone(),
        num_classes=NUM_CLASSES,
        label_smoothing=0.1,
        mixup={"mixup_alpha": 0.8, "cutmix_alpha": 1.0},
    )
    seen = {}

    def metrics_spy(metrics, outputs, batch):
        seen.update(outputs=outputs.detach(), batch=batch)

    monkeypatch.setattr(task, "update_metrics", metrics_spy)
    monkeypatch.setattr(task, "log", lambda *a, **k: None)
    monkeypatch.setattr(task, "log_dict", lambda *a, **k: None)
    images, labels = batch(8)
    np.random.seed(1)
    loss = task.training_step({"image": images.clone(), "label": labels}, 0)
    np.random.seed(1)
    want_images, want_targets = Mixup(
        num_classes=NUM_CLASSES, mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1
    )(images.clone(), labels)
    torch.testing.assert_close(seen["batch"]["image"], want_images)
    torch.testing.assert_close(seen["batch"]["soft_target"], want_targets)
    assert torch.equal(seen["batch"]["label"], labels)  # metrics count the unmixed labels
    expected = SoftTargetCrossEntropy()(seen["outputs"], want_targets)
    by_hand = -(want_targets * seen["outputs"].log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(loss.detach(), expected)
    torch.testing.assert_close(loss.detach(), by_hand)


def test_validation_keeps_plain_cross_entropy_with_mixup_on():
    torch.manual_seed(0)
    task = ClassificationTask(
        backbone=TinyBackbone(),
        num_classes=NUM_CLASSES,
        label_smoothing=0.1,
        mixup={"mixup_alpha": 1},
    )
    logits, labels = torch.randn(4, NUM_CLASSES), torch.tensor([0, 1, 4, 2])
    expected = F.cross_entropy(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(task.compute_loss(logits, {"label": labels}), expected)


def test_mixup_smoothing_defaults_to_the_tasks_and_can_be_set():
    assert build_mixup({"mixup_alpha": 1.0}, 3, label_smoothing=0.1).label_smoothing == 0.1
    own = build_mixup({"mixup_alpha": 1.0, "label_smoothing": 0.0}, 3, label_smoothing=0.1)
    assert own.label_smoothing == 0.0
    assert build_mixup({"mixup_alpha": 1.0, "label_smoothing": None}, 3, 0.2).label_smoothing == 0.2
    assert build_mixup(None, 3, label_smoothing=0.1) is None


def test_nothing_to_mix_is_off():
    assert build_mixup({"mixup_alpha": 0.0, "cutmix_alpha": 0.0, "prob": 0.5}, 3, 0.1) is None
    assert build_mixup({"cutmix_minmax": [0.2, 0.8]}, 3, 0.1) is not None


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (
            {"mixup_alpa": 0.8},
            "task.mixup.mixup_alpa is not a mixup setting. Did you mean: mixup_alpha",
        ),
        ({"num_classes": 3, "mixup_alpha": 1.0}, "task.mixup.num_classes is not a mixup setting"),
        ({"mixup_alpha": -1.0}, "task.mixup.mixup_alpha must be >= 0"),
        ({"cutmix_alpha": 1.0, "switch_prob": 2}, "task.mixup.switch_prob must be in [0, 1]"),
        ({"mixup_alpha": 1.0, "mode": "pairs"}, "task.mixup.mode must be one of batch, pair, elem"),
        ({"cutmix_minmax": [0.5]}, "task.mixup.cutmix_minmax must be [low, high]"),
        (0.8, "task.mixup must be a mapping like {mixup_alpha: 0.8"),
    ],
)
def test_bad_mixup_config_says_which_key_and_the_fix(cfg, message):
    with pytest.raises(ValueError) as err:
        build_mixup(cfg, 3, label_smoothing=0.0)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
