"""Segmentation losses against values computed by hand."""

import math

import pytest
import torch

from cvtasks.losses.segmentation import SegmentationLoss, cross_entropy, dice_loss

BIG = 30.0  # logits this far apart give a softmax of 1 and 0 to float precision


def one_hot_logits(classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Logits ``[1, C, H, W]`` whose softmax is (almost exactly) the one-hot of ``classes``."""
    return torch.nn.functional.one_hot(classes, num_classes).permute(2, 0, 1)[None].float() * BIG


def test_dice_on_known_masks():
    # Prediction:  0 0 1 1    target: 0 1 1 1
    # class 0: |P∩T| = 1, |P| = 2, |T| = 1 → 2/3;  class 1: |P∩T| = 2, |P| = 2, |T| = 3 → 4/5
    pred = torch.tensor([[0, 0, 1, 1]])
    target = torch.tensor([[[0, 1, 1, 1]]])
    loss = dice_loss(one_hot_logits(pred, 3), target)
    expected = 1 - (2 / 3 + 4 / 5) / 2  # class 2 is absent from the target: left out
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_dice_is_zero_for_a_perfect_prediction_and_one_for_a_disjoint_one():
    target = torch.tensor([[[0, 1], [1, 0]]])
    assert dice_loss(one_hot_logits(target[0], 2), target).item() == pytest.approx(0, abs=1e-6)
    assert dice_loss(one_hot_logits(1 - target[0], 2), target).item() == pytest.approx(1, abs=1e-6)


def test_dice_with_soft_probabilities_and_ignored_pixels():
    # Two pixels, two classes, p(class 1) = 0.5 and 0.8; the third pixel is ignored.
    p1 = torch.tensor([0.5, 0.8, 0.1])
    logits = torch.stack([torch.zeros(3), torch.log(p1 / (1 - p1))])[None, :, None, :]
    target = torch.tensor([[[1, 0, 255]]])
    # class 0: p0 = (0.5, 0.2); t0 = (0, 1): 2*0.2 / (0.7 + 1) ; class 1: 2*0.5 / (1.3 + 1)
    expected = 1 - (0.4 / 1.7 + 1.0 / 2.3) / 2
    assert dice_loss(logits, target).item() == pytest.approx(expected, abs=1e-5)


def test_cross_entropy_with_ignore_index_by_hand():
    logits = torch.tensor([[[[2.0, 0.0, 1.0]], [[0.0, 1.0, 3.0]]]])  # [1, 2, 1, 3]
    target = torch.tensor([[[0, 1, 255]]])

    def nll(scores, k):
        return -(scores[k] - math.log(sum(math.exp(s) for s in scores)))

    expected = (nll([2.0, 0.0], 0) + nll([0.0, 1.0], 1)) / 2  # the 255 pixel does not count
    assert cross_entropy(logits, target).item() == pytest.approx(expected, abs=1e-6)
    weights = torch.tensor([3.0, 1.0])
    weighted = (3 * nll([2.0, 0.0], 0) + 1 * nll([0.0, 1.0], 1)) / (3 + 1)
    assert cross_entropy(logits, target, weights).item() == pytest.approx(weighted, abs=1e-6)
    torch.testing.assert_close(
        cross_entropy(logits, target, weights),
        torch.nn.functional.cross_entropy(logits, target, weight=weights, ignore_index=255),
    )


def test_all_ignored_batches_give_zero_not_nan():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), 255)
    loss = SegmentationLoss("ce_dice")(logits, target)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_sum_is_weighted_sum_of_terms():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 4, 5, 5), torch.randint(0, 4, (2, 5, 5))
    target[0, 0] = 255
    ce, dice = cross_entropy(logits, target), dice_loss(logits, target)
    torch.testing.assert_close(SegmentationLoss("ce")(logits, target), ce)
    torch.testing.assert_close(SegmentationLoss("dice")(logits, target), dice)
    both = SegmentationLoss("ce_dice", ce_weight=0.5, dice_weight=2.0)(logits, target)
    torch.testing.assert_close(both, 0.5 * ce + 2.0 * dice)


def test_bad_configuration_names_the_key():
    with pytest.raises(ValueError, match=r"task\.loss\.name.*ce, dice, ce_dice"):
        SegmentationLoss("focal")
    with pytest.raises(ValueError, match="2 values for 3 classes"):
        SegmentationLoss(num_classes=3, class_weights=[1, 2])
    with pytest.raises(ValueError, match=">= 0"):
        SegmentationLoss(class_weights=[1, -1])
