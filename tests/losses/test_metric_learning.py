"""Metric-learning losses against hand-computed values on 1-D and 2-D toys."""

import math

import pytest
import torch
import torch.nn.functional as F

from cvtasks.heads.embedding import ComparisonNetwork
from cvtasks.losses.metric_learning import (
    ComparisonLoss,
    ContrastiveLoss,
    TripletLoss,
    balanced_bce,
    batch_hard_triplet_loss,
    build_metric_loss,
    contrastive_loss,
    cross_distance,
    pair_distance,
    pairwise_distances,
    semi_hard_triplet_loss,
    triplet_loss,
)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_triplet_loss_is_eq_6_27_on_a_2d_toy():
    anchor = t([0.0, 0.0], [0.0, 0.0])
    same = t([1.0, 0.0], [1.0, 0.0])  # d_same = 1
    different = t([0.0, 2.0], [0.0, 0.5])  # d_different = 4 (admissible), 0.25
    # max(1 - 4 + 0.2, 0) = 0 and max(1 - 0.25 + 0.2, 0) = 0.95
    assert triplet_loss(anchor, same, different, margin=0.2) == pytest.approx(0.95 / 2)


def test_pairwise_distances_are_squared_euclidean_with_a_zero_diagonal():
    x = t([0.0, 0.0], [3.0, 4.0], [1.0, 1.0])
    assert torch.allclose(pairwise_distances(x), t([0, 25, 2], [25, 0, 13], [2, 13, 0]))
    assert torch.allclose(pairwise_distances(x, squared=False), torch.cdist(x, x), atol=1e-5)


def test_plain_distances_have_finite_gradients_for_identical_points():
    x = t([1.0, 2.0], [1.0, 2.0], [0.0, 0.0]).requires_grad_()
    pairwise_distances(x, squared=False).sum().backward()
    assert torch.isfinite(x.grad).all()


# Identity 0: a=(0,0), b=(1,0), c=(3,0); identity 1: d=(0,1), e=(0,4).
TOY = t([0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 4.0])
TOY_IDS = torch.tensor([0, 0, 0, 1, 1])


def test_batch_hard_picks_the_farthest_positive_and_the_nearest_negative():
    # Squared distances by hand, per anchor: (hardest positive, hardest negative)
    # a: pos b=1, c=9 -> 9; neg d=1, e=16 -> 1      loss 9 - 1 + 0.2 = 8.2
    # b: pos a=1, c=4 -> 4; neg d=2, e=17 -> 2      loss 4 - 2 + 0.2 = 2.2
    # c: pos a=9, b=4 -> 9; neg d=10, e=25 -> 10    loss 9 - 10 + 0.2 = 0 (admissible)
    # d: pos e=9;           neg a=1, b=2, c=10 -> 1 loss 9 - 1 + 0.2 = 8.2
    # e: pos d=9;           neg a=16, b=17, c=25 -> 16 loss 0
    expected = (8.2 + 2.2 + 0 + 8.2 + 0) / 5
    assert batch_hard_triplet_loss(TOY, TOY_IDS, margin=0.2) == pytest.approx(expected)
    pos, neg = [2, 2, 0, 4, 3], [3, 3, 3, 0, 0]
    by_hand = triplet_loss(TOY, TOY[pos], TOY[neg], margin=0.2)
    assert batch_hard_triplet_loss(TOY, TOY_IDS, margin=0.2) == pytest.approx(float(by_hand))


def test_batch_hard_skips_anchors_without_a_positive_and_keeps_the_graph():
    x = t([0.0, 0.0], [1.0, 0.0], [0.0, 1.0]).requires_grad_()
    ids = torch.tensor([0, 0, 1])  # the third sample has no positive
    # a: pos 1, neg 1 -> 0.2; b: pos 1, neg 2 -> 0 (max(1 - 2 + 0.2, 0))
    assert batch_hard_triplet_loss(x, ids, margin=0.2).item() == pytest.approx(0.1)
    alone = batch_hard_triplet_loss(x, torch.tensor([0, 1, 2]))
    alone.backward()
    assert alone == 0 and x.grad is not None


def test_semi_hard_picks_the_nearest_negative_farther_than_the_positive():
    # 1-D: anchor 0.0 and positive 1.0 (identity 0); negatives of identities 1, 2, 3.
    x = t([0.0], [1.0], [0.5], [1.1], [2.0])
    ids = torch.tensor([0, 0, 1, 2, 3])
    # pair (0 -> 1): d_as = 1; negatives 0.25 (hard), 1.21 (semi-hard), 4 -> picks 1.21
    #   loss = 1 - 1.21 + 0.5 = 0.29
    # pair (1 -> 0): d_as = 1; negatives 0.25, 0.01, 1.0: none farther than 1 -> falls back to
    #   the farthest, 1.0: loss = 1 - 1 + 0.5 = 0.5
    assert semi_hard_triplet_loss(x, ids, margin=0.5) == pytest.approx((0.29 + 0.5) / 2)


def test_semi_hard_ignores_hard_negatives_that_batch_hard_would_pick():
    x = t([0.0], [1.0], [0.5], [1.1])
    ids = torch.tensor([0, 0, 1, 1])
    # anchor 0: semi-hard negative 1.1 (1.21), batch-hard would take 0.5 (0.25)
    semi = semi_hard_triplet_loss(x[:], ids, margin=0.5)
    # pairs: (0->1) d=1 vs 1.21 -> 0.29; (1->0) d=1, negatives 0.25, 0.01 -> farthest 0.25 -> 1.25
    # (2->3) d=0.36, negatives 0.25, 0.25 (hard) -> farthest 0.25 -> 0.61
    # (3->2) d=0.36, negatives 1.21, 0.01 -> nearest farther 1.21 -> 0
    assert semi == pytest.approx((0.29 + 1.25 + 0.61 + 0.0) / 4)


def test_contrastive_loss_by_hand():
    distance = torch.tensor([0.1, 0.3, 0.8, 0.2])
    same = torch.tensor([1, 1, 0, 0])
    # same: (0.01 + 0.09) / 2 = 0.05; different: (0 + 0.3^2) / 2 = 0.045
    assert contrastive_loss(distance, same, margin=0.5) == pytest.approx(0.095)
    assert contrastive_loss(distance[:2], same[:2], margin=0.5) == pytest.approx(0.05)


def test_contrastive_module_uses_every_pair_of_the_batch():
    x = t([0.0, 0.0], [0.3, 0.4], [0.3, 1.2])  # (0,1) same d=0.5; (0,2) d=1.24; (1,2) d=0.8
    loss = ContrastiveLoss(margin=0.9)(x, torch.tensor([0, 0, 1]))
    assert loss == pytest.approx(0.25 + (0.0 + 0.01) / 2)


def test_balanced_bce_by_hand():
    logits = torch.tensor([2.0, -1.0, 0.0])
    same = torch.tensor([1, 0, 0])
    bce = [math.log1p(math.exp(-2.0)), math.log1p(math.exp(-1.0)), math.log(2.0)]
    expected = (2 * bce[0] + bce[1] + bce[2]) / 4  # the one positive weighs 2 = 2 negatives / 1
    assert balanced_bce(logits, same) == pytest.approx(expected, rel=1e-6)


def test_comparison_network_is_logistic_regression_on_the_absolute_difference():
    net = ComparisonNetwork(2)
    with torch.no_grad():
        net.linear.weight.copy_(torch.tensor([[-1.0, -2.0]]))
        net.linear.bias.fill_(0.5)
    a, b = t([0.0, 0.0]), t([1.0, -1.0])
    with torch.no_grad():
        assert float(net(a, b)) == pytest.approx(-1.0 - 2.0 + 0.5)
        assert float(net(b, a)) == pytest.approx(-2.5)  # symmetric
        assert float(net.probability(a, b)) == pytest.approx(1 / (1 + math.exp(2.5)))
    assert net(t([0.0, 0.0], [1.0, 1.0])[:, None], t([0.0, 0.0], [2.0, 0.0])[None]).shape == (2, 2)

    x = t([0.0, 0.0], [0.0, 1.0], [1.0, -1.0])
    ids = torch.tensor([0, 0, 1])
    # pairs (0,1) same: logit -2 + 0.5 = -1.5; (0,2) diff: -2.5; (1,2) diff: |1|,|2| -> -4.5
    expected = balanced_bce(torch.tensor([-1.5, -2.5, -4.5]), torch.tensor([1, 0, 0]))
    assert ComparisonLoss(net)(x, ids).item() == pytest.approx(float(expected))


def test_pair_and_cross_distances():
    a, b = t([1.0, 0.0], [0.0, 2.0]), t([0.0, 1.0], [0.0, 1.0])
    assert torch.allclose(pair_distance(a, b, "cosine"), torch.tensor([1.0, 0.0]), atol=1e-6)
    assert torch.allclose(pair_distance(a, b, "euclidean"), torch.tensor([math.sqrt(2), 1.0]))
    assert torch.allclose(cross_distance(a, b, "cosine"), t([1.0, 1.0], [0.0, 0.0]), atol=1e-6)
    with pytest.raises(ValueError, match=r"task\.distance"):
        pair_distance(a, b, "manhattan")


def test_build_metric_loss_and_its_errors():
    loss = build_metric_loss("triplet", None, "semi_hard")
    assert isinstance(loss, TripletLoss) and loss.margin == 0.2 and loss.mining == "semi_hard"
    assert build_metric_loss("contrastive").margin == 0.5
    with pytest.raises(ValueError, match="'triplet', 'contrastive', 'comparison'"):
        build_metric_loss("arcface")
    with pytest.raises(ValueError, match="margin must be > 0"):
        build_metric_loss("triplet", margin=0.0)
    with pytest.raises(ValueError, match=r"task\.mining"):
        build_metric_loss("triplet", mining="hardest")
    with pytest.raises(ValueError, match="comparison network"):
        build_metric_loss("comparison")


def test_triplet_training_separates_two_identities():
    torch.manual_seed(0)
    x = torch.randn(16, 4)
    ids = torch.arange(16) % 2
    layer = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    loss_fn = TripletLoss(margin=0.5, mining="semi_hard")
    first = float(loss_fn(F.normalize(layer(x + ids[:, None] * 2.0)), ids).detach())
    for _ in range(50):
        loss = loss_fn(F.normalize(layer(x + ids[:, None] * 2.0)), ids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss) < first / 2


def _mined_by_loops(dist, ids, margin, semi_hard):
    """The mined triplet losses anchor by anchor and pair by pair, in plain Python."""
    n, losses = len(ids), []
    for a in range(n):
        positives = [s for s in range(n) if s != a and ids[s] == ids[a]]
        negatives = [d for d in range(n) if ids[d] != ids[a]]
        if not positives or not negatives:
            continue
        if not semi_hard:
            hardest = max(dist[a][s] for s in positives) - min(dist[a][d] for d in negatives)
            losses.append(max(hardest + margin, 0.0))
            continue
        for s in positives:
            farther = [dist[a][d] for d in negatives if dist[a][d] > dist[a][s]]
            d_neg = min(farther) if farther else max(dist[a][d] for d in negatives)
            losses.append(max(dist[a][s] - d_neg + margin, 0.0))
    return sum(losses) / len(losses) if losses else 0.0


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard"])
@pytest.mark.parametrize("ids", [[0, 0, 1, 1, 2, 2, 3, 3], [0, 0, 0, 1, 2, 2, 5, 1], [4] * 6])
def test_mined_triplet_losses_equal_a_loop_over_anchors_and_pairs(mining, ids):
    g = torch.Generator().manual_seed(len(ids))
    x = F.normalize(torch.randn(len(ids), 3, generator=g), dim=1).requires_grad_()
    identity = torch.tensor(ids)
    loss = TripletLoss(margin=0.3, mining=mining)(x, identity)
    dist = pairwise_distances(x).tolist()
    assert float(loss) == pytest.approx(_mined_by_loops(dist, ids, 0.3, mining == "semi_hard"))
    loss.backward()
    assert torch.isfinite(x.grad).all()  # also when no anchor has a negative (one identity)


def test_contrastive_and_balanced_bce_with_one_kind_of_pair_only():
    distance = torch.tensor([0.1, 0.3])
    assert contrastive_loss(distance, torch.tensor([0, 0]), margin=0.5) == pytest.approx(
        (0.4**2 + 0.2**2) / 2
    )
    logits = torch.tensor([1.0, -2.0])
    # no different pair: no reweighting, the plain mean of the two cross-entropies
    expected = F.binary_cross_entropy_with_logits(logits, torch.ones(2))
    assert balanced_bce(logits, torch.tensor([1, 1])) == pytest.approx(float(expected))
