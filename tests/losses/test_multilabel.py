import math

import pytest
import torch
import torch.nn.functional as F

from cvtasks.losses.multilabel import MultilabelLoss, asymmetric_loss


def paper_asl(logits, targets, gamma_neg, gamma_pos, clip):
    """Ridnik et al. 2021, eq. 7, one element at a time in plain Python."""
    total = 0.0
    for x, y in zip(logits.flatten().tolist(), targets.flatten().tolist()):
        p = 1 / (1 + math.exp(-x))
        if y == 1:
            total += -((1 - p) ** gamma_pos) * math.log(p)
        else:
            p_m = max(p - clip, 0.0)
            total += -(p_m**gamma_neg) * math.log(1 - p_m)
    return total / logits.numel()


def test_asymmetric_loss_matches_the_paper_formula():
    torch.manual_seed(0)
    logits = torch.randn(6, 5) * 3
    targets = (torch.rand(6, 5) > 0.6).float()
    got = asymmetric_loss(logits, targets, gamma_neg=4, gamma_pos=1, clip=0.05)
    assert got.item() == pytest.approx(paper_asl(logits, targets, 4, 1, 0.05), rel=1e-5)


def test_asymmetric_loss_without_focusing_or_clip_is_bce():
    torch.manual_seed(1)
    logits, targets = torch.randn(4, 7) * 4, (torch.rand(4, 7) > 0.5).float()
    expected = F.binary_cross_entropy_with_logits(logits, targets)
    torch.testing.assert_close(asymmetric_loss(logits, targets, 0, 0, 0), expected)


def test_bce_loss_weights_positives():
    logits, targets = torch.tensor([[0.3, -1.2]]), torch.tensor([[1.0, 0.0]])
    loss = MultilabelLoss("bce", pos_weight=3.0)(logits, targets)
    expected = (
        -3 * math.log(torch.sigmoid(torch.tensor(0.3)).item())
        - math.log(1 - torch.sigmoid(torch.tensor(-1.2)).item())
    ) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_unknown_loss_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"task.loss.name='focal'.*bce, asl"):
        MultilabelLoss("focal")
