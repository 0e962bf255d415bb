"""Seed 001's localization loss against hand-computed values."""

import math

import pytest
import torch

from cvtasks.losses.localization import (
    LocalizationLoss,
    box_regression_loss,
    localization_loss,
)

SURE = 50.0  # a logit margin that makes cross-entropy ~0


def one_hot_logits(labels, classes=4):
    logits = torch.zeros(len(labels), classes)
    logits[torch.arange(len(labels)), torch.tensor(labels)] = SURE
    return logits


def test_perfect_prediction_costs_nothing_for_every_box_loss():
    labels = torch.tensor([1, 3, 0])
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.3, 0.7, 0.1, 0.1], [0.0, 0.0, 0.0, 0.0]])
    for kind in ("mse", "smooth_l1", "giou"):
        parts = localization_loss(one_hot_logits([1, 3, 0]), boxes, labels, boxes, box_loss=kind)
        assert float(parts.total) == pytest.approx(0.0, abs=1e-4), kind  # GIoU's eps
        assert float(parts.box) == pytest.approx(0.0, abs=1e-4), kind


def test_mse_is_the_mean_of_the_four_squared_errors():
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    target = torch.tensor([[0.6, 0.5, 0.2, 0.4]])
    # (0.1^2 + 0 + 0 + 0.2^2) / 4
    assert float(box_regression_loss(pred, target, "mse")) == pytest.approx(0.0125)


def test_smooth_l1_is_quadratic_below_beta_and_linear_above():
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    target = torch.tensor([[0.6, 0.52, 0.2, 0.2]])
    # |0.1| >= beta: 0.1 - 0.05 / 2 = 0.075; |0.02| < beta: 0.5 * 0.02^2 / 0.05 = 0.004
    expected = (0.075 + 0.004) / 4
    got = box_regression_loss(pred, target, "smooth_l1", beta=0.05)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_giou_of_two_overlapping_squares():
    # xyxy [0,0,2,2] and [1,1,3,3]: IoU 1/7, hull 9, union 7 -> GIoU = 1/7 - 2/9
    pred = torch.tensor([[1.0, 1.0, 2.0, 2.0]])
    target = torch.tensor([[2.0, 2.0, 2.0, 2.0]])
    expected = 1 - (1 / 7 - 2 / 9)
    assert float(box_regression_loss(pred, target, "giou")) == pytest.approx(expected, rel=1e-5)


def test_wrong_class_and_far_box():
    labels = torch.tensor([2])
    logits = torch.zeros(1, 4)  # uniform over nothing + 3 classes
    pred = torch.tensor([[0.1, 0.1, 0.1, 0.1]])
    target = torch.tensor([[0.9, 0.9, 0.1, 0.1]])
    parts = localization_loss(logits, pred, labels, target, box_loss="giou")
    assert float(parts.classification) == pytest.approx(math.log(4))
    assert float(parts.box) > 1.0  # disjoint boxes: 1 - GIoU exceeds 1
    assert float(parts.total) == pytest.approx(math.log(4) + float(parts.box))


def test_nothing_images_train_the_classifier_only_and_gamma_weighs_the_box():
    # Seed 001: C_cls + gamma * (1 - y_nothing) * C_loc, averaged over the batch.
    labels = torch.tensor([1, 0])
    logits = torch.zeros(2, 3)
    target = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.0, 0.0, 0.0, 0.0]])
    pred = torch.tensor([[0.6, 0.5, 0.2, 0.2], [0.9, 0.9, 0.9, 0.9]])  # the "nothing" box is junk
    parts = localization_loss(logits, pred, labels, target, gamma=3.0)
    box = 0.1**2 / 4
    assert float(parts.box) == pytest.approx(box)
    assert float(parts.total) == pytest.approx(math.log(3) + 3.0 * box * 1 / 2)


def test_a_batch_of_nothing_still_reaches_the_box_output():
    pred = torch.rand(3, 4, requires_grad=True)
    logits = torch.zeros(3, 5, requires_grad=True)
    parts = localization_loss(logits, pred, torch.zeros(3, dtype=torch.long), torch.zeros(3, 4))
    parts.total.backward()
    assert float(parts.box.detach()) == 0.0
    assert pred.grad is not None and torch.all(pred.grad == 0)


@pytest.mark.parametrize("kind", ["mse", "smooth_l1", "giou"])
def test_junk_targets_of_nothing_images_change_neither_loss_nor_gradient(kind):
    """A *nothing* row's target is "do not care": even NaN there leaves both unchanged."""
    torch.manual_seed(0)
    pred = torch.rand(4, 4).clamp(0.1, 0.9).requires_grad_()
    labels = torch.tensor([1, 0, 2, 0])
    target = torch.rand(4, 4).clamp(0.1, 0.9)
    junk = target.clone()
    junk[1] = float("nan")
    junk[3] = 0.0  # a zero-size box: IoU 0/0
    parts = localization_loss(torch.zeros(4, 3), pred, labels, junk, box_loss=kind)
    parts.total.backward()
    # oracle: the per-box loss of the object rows alone, averaged
    objects = box_regression_loss(pred[[0, 2]], target[[0, 2]], kind).mean()
    torch.testing.assert_close(parts.box, objects)
    assert torch.isfinite(pred.grad).all() and not pred.grad[[1, 3]].any()


def test_module_checks_its_settings():
    assert LocalizationLoss().gamma == 1.0 and LocalizationLoss().box_loss == "mse"  # seed
    with pytest.raises(ValueError, match="box_loss"):
        LocalizationLoss(box_loss="l2")
    with pytest.raises(ValueError, match="gamma"):
        LocalizationLoss(gamma=0)
    with pytest.raises(ValueError, match="label_smoothing"):
        LocalizationLoss(label_smoothing=1.0)
