"""Landmark losses against hand-computed values."""

import math

import pytest
import torch

from cvtasks.losses.landmarks import (
    gaussian_heatmaps,
    heatmap_loss,
    point_loss,
    visibility_loss,
    wing_loss,
)

TARGET = torch.tensor([[[4.0, 6.0], [10.0, 10.0]]])
WRONG = torch.tensor([[[1.0, 2.0], [10.0, 10.0]]])  # point 0 off by (-3, -4), point 1 exact
BOTH = torch.tensor([[True, True]])


def test_wing_loss_pieces_meet_at_the_width():
    error = torch.tensor([0.0, 1.0, -1.0, 10.0, 12.0])
    c = 10 - 10 * math.log(1 + 10 / 2)
    expected = torch.tensor(
        [0.0, 10 * math.log(1.5), 10 * math.log(1.5), 10 * math.log(6.0), 12.0 - c]
    )
    torch.testing.assert_close(wing_loss(error, width=10.0, curvature=2.0), expected)
    with pytest.raises(ValueError, match="width and curvature"):
        wing_loss(error, width=0.0)


@pytest.mark.parametrize("kind", ["mse", "l1", "wing"])
def test_a_perfect_prediction_costs_nothing(kind):
    assert point_loss(TARGET.clone(), TARGET, BOTH, kind).item() == 0.0


@pytest.mark.parametrize(
    ("kind", "per_point_0"),
    [("mse", 9.0 + 16.0), ("l1", 3.0 + 4.0), ("wing", 10 * math.log(2.5) + 10 * math.log(3.0))],
)
def test_a_wrong_prediction_by_hand(kind, per_point_0):
    # the mean over the two visible points: point 1 is exact
    loss = point_loss(WRONG, TARGET, BOTH, kind)
    assert loss.item() == pytest.approx(per_point_0 / 2, rel=1e-6)


def test_invisible_points_do_not_count():
    pred = torch.cat([WRONG, torch.tensor([[[500.0, -500.0]]])], dim=1)
    target = torch.cat([TARGET, torch.zeros(1, 1, 2)], dim=1)
    visible = torch.tensor([[True, True, False]])
    assert point_loss(pred, target, visible, "l1").item() == pytest.approx(3.5)
    nothing = point_loss(pred.requires_grad_(), target, torch.zeros(1, 3, dtype=torch.bool))
    assert nothing.item() == 0.0
    nothing.backward()  # still differentiable: a batch with no visible point must not break a step
    assert pred.grad is not None and pred.grad.abs().sum() == 0


def test_point_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="one of"):
        point_loss(WRONG, TARGET, BOTH, "huber")
    with pytest.raises(ValueError, match=r"\[B, K, 2\]"):
        point_loss(WRONG[..., :1], TARGET[..., :1], BOTH)
    with pytest.raises(ValueError, match="visible"):
        point_loss(WRONG, TARGET, torch.ones(1, 3, dtype=torch.bool))


def test_gaussian_heatmap_values():
    # a point at the centre of cell (row 1, col 2) of a 4x5 map: x = 2.5 / 5, y = 1.5 / 4
    maps = gaussian_heatmaps(torch.tensor([[[2.5 / 5, 1.5 / 4]]]), (4, 5), sigma=1.0)
    assert maps.shape == (1, 1, 4, 5)
    assert maps[0, 0, 1, 2].item() == pytest.approx(1.0)
    assert maps[0, 0, 1, 3].item() == pytest.approx(math.exp(-0.5))
    assert maps[0, 0, 3, 4].item() == pytest.approx(math.exp(-(4 + 4) / 2))
    assert maps.max().item() == pytest.approx(1.0)


def test_heatmap_loss_perfect_wrong_and_masked():
    points = torch.tensor([[[0.3, 0.6], [0.7, 0.2]]])
    target = gaussian_heatmaps(points, (8, 8), sigma=1.5)
    assert heatmap_loss(target, points, BOTH, sigma=1.5).item() == pytest.approx(0.0, abs=1e-12)
    zeros = torch.zeros_like(target)
    expected = target.square().mean(dim=(-2, -1)).mean()
    assert heatmap_loss(zeros, points, BOTH, sigma=1.5).item() == pytest.approx(expected.item())
    only_first = torch.tensor([[True, False]])
    first = target[0, 0].square().mean()
    assert heatmap_loss(zeros, points, only_first, 1.5).item() == pytest.approx(first.item())
    with pytest.raises(ValueError, match="heatmaps must be"):
        heatmap_loss(zeros[:, :1], points, BOTH)


def test_visibility_loss_is_binary_cross_entropy():
    logits = torch.tensor([[0.0, 2.0]])
    visible = torch.tensor([[True, False]])
    expected = (math.log(2) + math.log(1 + math.exp(2))) / 2
    assert visibility_loss(logits, visible).item() == pytest.approx(expected)
