"""Detection loss: focal and GIoU terms against direct formulas and torchvision, edge cases."""

import math

import pytest
import torch
from torchvision.ops import generalized_box_iou_loss

from cvtasks.losses.detection import DetectionLoss, box_regression_loss, heatmap_focal_loss
from cvtasks.ops.centernet import detection_targets, distances_to_boxes

STRIDE = 4


def focal_oracle(logits, target, ignore, alpha=2.0, beta=4.0):
    """CornerNet eq. 1, one element at a time."""
    total, positives = 0.0, 0
    for x, y, skip in zip(logits.flatten().tolist(), target.flatten().tolist(), ignore.flatten()):
        if skip:
            continue
        p = 1 / (1 + math.exp(-x))
        if y == 1:
            total += (1 - p) ** alpha * math.log(p)
            positives += 1
        else:
            total += (1 - y) ** beta * p**alpha * math.log(1 - p)
    return -total / max(positives, 1)


def batch_targets(num_classes=2, size=(10, 12)):
    boxes = [torch.tensor([[4.0, 6.0, 20.0, 30.0], [22.0, 2.0, 44.0, 18.0]]), torch.zeros(0, 4)]
    labels = [torch.tensor([0, 1]), torch.zeros(0, dtype=torch.long)]
    crowd = [torch.tensor([False, True]), torch.zeros(0, dtype=torch.bool)]
    return detection_targets(boxes, labels, crowd, num_classes, size, STRIDE)


def test_focal_loss_matches_the_per_element_formula():
    torch.manual_seed(0)
    targets = batch_targets()
    logits = torch.randn(2, 2, 10, 12) * 3
    assert targets.ignore.any() and (targets.heatmap == 1).any()
    got = heatmap_focal_loss(logits, targets.heatmap, targets.ignore)
    expected = focal_oracle(logits, targets.heatmap, targets.ignore)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    got = heatmap_focal_loss(logits, targets.heatmap, None, alpha=1.5, beta=3.0)
    expected = focal_oracle(logits, targets.heatmap, torch.zeros_like(targets.ignore), 1.5, 3.0)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_box_loss_is_the_weighted_mean_of_torchvision_giou():
    torch.manual_seed(0)
    targets = batch_targets()
    distances = torch.rand(2, 4, 10, 12) * 16
    got = box_regression_loss(distances, targets, STRIDE, "giou")
    pred = distances_to_boxes(distances, STRIDE).permute(0, 2, 3, 1)
    weight = targets.box_weight[:, 0]
    cells = weight > 0
    per_cell = generalized_box_iou_loss(pred[cells], targets.box.permute(0, 2, 3, 1)[cells])
    expected = (per_cell * weight[cells]).sum() / weight.sum()
    torch.testing.assert_close(got, expected)


def test_l1_term_is_scaled_by_the_target_box_size():
    targets = batch_targets()
    truth = targets.box.permute(0, 2, 3, 1)
    xs = (torch.arange(12) + 0.5) * STRIDE
    ys = (torch.arange(10) + 0.5)[:, None] * STRIDE
    exact = torch.stack(
        [xs - truth[..., 0], ys - truth[..., 1], truth[..., 2] - xs, truth[..., 3] - ys], dim=1
    )
    assert box_regression_loss(exact, targets, STRIDE, "l1").abs() < 1e-6
    wider = exact.clone()
    wider[:, 2] += 8.0  # every right edge 8 px further: L1 = 8 / width / 4 per cell
    width = (truth[..., 2] - truth[..., 0]).clamp(min=1)
    weight = targets.box_weight[:, 0]
    expected = ((8.0 / width / 4) * weight).sum() / weight.sum()
    torch.testing.assert_close(box_regression_loss(wider, targets, STRIDE, "l1"), expected)
    giou = box_regression_loss(wider, targets, STRIDE, "giou")
    both = box_regression_loss(wider, targets, STRIDE, "giou_l1", l1_weight=0.5)
    torch.testing.assert_close(both, giou + 0.5 * expected)


def test_module_weights_the_parts_and_has_gradients():
    torch.manual_seed(0)
    targets = batch_targets()
    outputs = {
        "heatmap": torch.randn(2, 2, 10, 12, requires_grad=True),
        "box": (torch.rand(2, 4, 10, 12) * 10).requires_grad_(),
    }
    parts = DetectionLoss(heatmap_weight=2.0, box_weight=3.0)(outputs, targets, STRIDE)
    torch.testing.assert_close(parts.total, 2.0 * parts.heatmap + 3.0 * parts.box)
    parts.total.backward()
    assert outputs["heatmap"].grad.abs().sum() > 0 and outputs["box"].grad.abs().sum() > 0


def test_batch_without_objects_gives_a_finite_loss_and_gradients():
    empty = [torch.zeros(0, 4)] * 2
    targets = detection_targets(
        empty,
        [torch.zeros(0, dtype=torch.long)] * 2,
        [torch.zeros(0, dtype=torch.bool)] * 2,
        3,
        (6, 6),
        STRIDE,
    )
    outputs = {
        "heatmap": torch.randn(2, 3, 6, 6, requires_grad=True),
        "box": torch.zeros(2, 4, 6, 6, requires_grad=True),  # degenerate boxes too
    }
    for kind in ("giou", "l1", "giou_l1"):
        parts = DetectionLoss(box_loss=kind)(outputs, targets, STRIDE)
        assert torch.isfinite(parts.total) and parts.box == 0
        parts.total.backward()
        assert torch.isfinite(outputs["heatmap"].grad).all()
        assert torch.isfinite(outputs["box"].grad).all()
    # Negatives only: the focal loss is the plain sum over cells (divided by 1).
    expected = focal_oracle(outputs["heatmap"].detach(), targets.heatmap, targets.ignore)
    assert parts.heatmap.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"box_loss": "iou"}, "task.loss.box_loss must be one of"),
        ({"box_weight": -1.0}, "task.loss.box_weight must be >= 0"),
    ],
)
def test_bad_settings_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        DetectionLoss(**kw)
