"""The GIoU loss against torchvision's, values and gradients, overlapping boxes or not."""

import torch
from torchvision.ops import generalized_box_iou_loss

from cvtasks.ops.boxes import giou_loss


def random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    corner = torch.rand(n, 2, generator=generator)
    size = torch.rand(n, 2, generator=generator) * 0.6 + 0.01
    return torch.cat([corner, corner + size], dim=1)


def test_giou_loss_equals_torchvision_in_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    pred, target = random_boxes(256, g), random_boxes(256, g)
    pred[:4] = target[:4]  # identical pairs
    pred[4, :2], pred[4, 2:] = target[4, 2:] + 0.1, target[4, 2:] + 0.3  # apart: no overlap
    ours_in = pred.clone().requires_grad_()
    theirs_in = pred.clone().requires_grad_()
    ours = giou_loss(ours_in, target)
    theirs = generalized_box_iou_loss(theirs_in, target, reduction="none")
    torch.testing.assert_close(ours, theirs)
    assert ((ours > 1) == (theirs > 1)).all() and (ours > 1).any()  # some pairs do not overlap
    (ours * torch.arange(256)).sum().backward()
    (theirs * torch.arange(256)).sum().backward()
    torch.testing.assert_close(ours_in.grad, theirs_in.grad)
    assert giou_loss(pred[:4], target[:4]).abs().max() < 1e-5  # eps / area off 0


def test_giou_loss_keeps_float64_and_upcasts_half():
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    other = torch.tensor([[0.5, 0.5, 1.5, 1.5]])
    assert giou_loss(boxes.double(), other.double()).dtype == torch.float64
    assert giou_loss(boxes.half(), other.half()).dtype == torch.float32
    # IoU 0.25 / 1.75 = 1/7; enclosing 2.25, union 1.75: GIoU = 1/7 - 0.5 / 2.25
    expected = 1 - (1 / 7 - 0.5 / 2.25)
    torch.testing.assert_close(giou_loss(boxes, other), torch.tensor([expected]))
