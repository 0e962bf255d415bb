"""Localization metrics against hand-computed cases."""

import pytest
import torch

from cvtasks.metrics.localization import LocalizationAccuracy, MeanBoxIoU

BOX = [0.5, 0.5, 0.2, 0.2]  # xyxy (0.4, 0.4, 0.6, 0.6)
SHIFTED = [0.6, 0.5, 0.2, 0.2]  # xyxy (0.5, 0.4, 0.7, 0.6): IoU with BOX = 0.02 / 0.06 = 1/3
NEAR = [0.52, 0.5, 0.2, 0.2]  # IoU with BOX = 0.018 / 0.022 = 9/11


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_mean_iou_perfect_and_hand_computed():
    metric = MeanBoxIoU()
    metric.update(t([BOX, BOX]), t([BOX, SHIFTED]), torch.tensor([1, 2]))
    assert float(metric.compute()) == pytest.approx((1 + 1 / 3) / 2, rel=1e-5)


def test_mean_iou_leaves_out_nothing_images_and_accumulates():
    metric = MeanBoxIoU()
    metric.update(t([BOX, [0.1, 0.1, 0.1, 0.1]]), t([SHIFTED, BOX]), torch.tensor([3, 0]))
    metric.update(t([BOX]), t([BOX]), torch.tensor([1]))
    assert float(metric.compute()) == pytest.approx((1 / 3 + 1) / 2, rel=1e-5)
    only_nothing = MeanBoxIoU()
    only_nothing.update(t([BOX]), t([BOX]), torch.tensor([0]))
    assert float(only_nothing.compute()) == 0.0


def test_disjoint_boxes_have_zero_iou():
    metric = MeanBoxIoU()
    metric.update(t([[0.1, 0.1, 0.1, 0.1]]), t([[0.9, 0.9, 0.1, 0.1]]), torch.tensor([1]))
    assert float(metric.compute()) == 0.0


def test_localization_accuracy_needs_the_class_and_the_box():
    metric = LocalizationAccuracy()
    labels = torch.tensor([1, 1, 2, 0, 1, 0])
    preds = torch.tensor([1, 1, 1, 0, 0, 2])
    pred_box = t([NEAR, SHIFTED, BOX, BOX, BOX, BOX])
    target_box = t([BOX, BOX, BOX, SHIFTED, BOX, BOX])
    metric.update(preds, pred_box, target_box, labels)
    # right + IoU 9/11 | right, IoU 1/3 | wrong class | nothing, right (box ignored) |
    # missed the object | an object where there is nothing
    assert float(metric.compute()) == pytest.approx(2 / 6)


def test_localization_accuracy_takes_scores_and_a_threshold():
    scores = torch.tensor([[0.0, 5.0, 0.0], [0.0, 5.0, 0.0]])
    labels = torch.tensor([1, 1])
    strict = LocalizationAccuracy(iou_threshold=0.9)
    strict.update(scores, t([BOX, NEAR]), t([BOX, BOX]), labels)
    assert float(strict.compute()) == pytest.approx(0.5)
    loose = LocalizationAccuracy(iou_threshold=0.3)
    loose.update(scores, t([SHIFTED, NEAR]), t([BOX, BOX]), labels)
    assert float(loose.compute()) == 1.0


def test_bad_shapes_and_thresholds_are_rejected():
    with pytest.raises(ValueError, match="iou_threshold"):
        LocalizationAccuracy(iou_threshold=0)
    with pytest.raises(ValueError, match=r"\[B, 4\]"):
        MeanBoxIoU().update(t([BOX]), t([BOX[:3]]), torch.tensor([1]))
    with pytest.raises(ValueError, match="labels"):
        MeanBoxIoU().update(t([BOX]), t([BOX]), torch.tensor([1, 2]))


@pytest.mark.parametrize("metric", [MeanBoxIoU(), LocalizationAccuracy()])
def test_updates_after_a_reset_in_inference_mode(metric):
    # Lightning validates under inference_mode, then trains under no_grad/grad mode.
    args = ([torch.tensor([1])] if isinstance(metric, LocalizationAccuracy) else []) + [
        t([BOX]),
        t([BOX]),
        torch.tensor([1]),
    ]
    with torch.inference_mode():
        metric.update(*args)
        metric.compute()
        metric.reset()
    metric.update(*args)
    assert float(metric.compute()) == pytest.approx(1.0, rel=1e-5)
