"""Metric-learning losses for siamese networks: triplet (batch-hard, semi-hard), contrastive, BCE.

Every loss here reads a batch of embeddings ``[B, D]`` and their identities ``[B]`` (the
P identities x K images batches of :class:`~cvtasks.data.identity_sampler.IdentityBatchSampler`)
and forms its triplets or pairs inside the batch.

The triplet loss is seed 001 eq. (6.27) (§6.6, "Face Recognition, Siamese Networks, and Triplet
Loss"): ``C = max(||f(a) - f(s)||^2 - ||f(a) - f(d)||^2 + alpha, 0)`` for an anchor ``a``, an image
``s`` of the same person and an image ``d`` of a different one; a triplet is "admissible" (zero
loss) once ``d_same - d_different <= -alpha`` (eq. 6.28). The seed asks for "a properly curated
dataset" of triplets; here they are mined in each batch, batch-hard (Hermans et al., 2017: per
anchor the farthest positive and the nearest negative) or semi-hard (FaceNet, Schroff et al., 2015:
per positive pair the nearest negative that is still farther than the positive).

Mining selects by masks over the distance matrix (masked minima and maxima), never by boolean
indexing or ``nonzero``: the number of triplets is data-dependent, and reading it would make the
host wait for the GPU in every training step.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

DISTANCES = ("cosine", "euclidean")
MINING = ("batch_hard", "semi_hard")
LOSSES = ("triplet", "contrastive", "comparison")


def _check(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{key} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def pairwise_distances(embeddings: torch.Tensor, squared: bool = True) -> torch.Tensor:
    """Euclidean distances between all rows of ``embeddings``.

    Args:
        embeddings: ``[B, D]``.
        squared: return ``||x_i - x_j||^2`` (eq. 6.27's distance) instead of ``||x_i - x_j||``.

    Returns:
        ``[B, B]``, exactly zero on the diagonal.
    """
    x = embeddings.float()
    sq = (x * x).sum(dim=1)
    dist = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0.0)
    off_diagonal = 1.0 - torch.eye(len(x), device=x.device, dtype=x.dtype)
    if not squared:
        dist = dist.clamp_min(1e-12).sqrt()  # clamped: sqrt's gradient is infinite at 0
    return dist * off_diagonal


def pair_distance(a: torch.Tensor, b: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Distance of each row of ``a`` to the same row of ``b``; larger means less alike.

    Args:
        a: ``[N, D]`` embeddings.
        b: ``[N, D]`` embeddings.
        kind: ``"cosine"`` (``1 - cos``, in [0, 2]; the seed's production choice) or
            ``"euclidean"`` (``||a - b||``).

    Returns:
        ``[N]`` distances.
    """
    _check("task.distance", kind, DISTANCES)
    a, b = a.float(), b.float()
    if kind == "cosine":
        return 1.0 - F.cosine_similarity(a, b, dim=1)
    return (a - b).norm(dim=1)


def cross_distance(
    query: torch.Tensor, gallery: torch.Tensor, kind: str = "cosine"
) -> torch.Tensor:
    """Distances ``[Q, G]`` of every query row to every gallery row (see :func:`pair_distance`)."""
    _check("task.distance", kind, DISTANCES)
    q, g = query.float(), gallery.float()
    if kind == "cosine":
        return 1.0 - F.normalize(q, dim=1) @ F.normalize(g, dim=1).T
    return torch.cdist(q, g)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` holds; 0 (still in the graph) where it holds nowhere.

    A mask, not boolean indexing: the size of ``values[mask]`` depends on the values, and on a
    GPU the host would wait for the device to learn it in every training step.
    """
    return torch.where(mask, values, 0.0).sum() / mask.sum().clamp(min=1)


def _masks(identity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positive, negative)`` boolean ``[B, B]`` masks; a sample is not its own positive."""
    same = identity[:, None] == identity[None, :]
    eye = torch.eye(len(identity), dtype=torch.bool, device=identity.device)
    return same & ~eye, ~same


def triplet_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 0.2
) -> torch.Tensor:
    """Seed 001 eq. (6.27), averaged over the given triplets (rows).

    Args:
        anchor: ``f(x_a)``, ``[N, D]``.
        positive: ``f(x_s)``, an image of the same person, ``[N, D]``.
        negative: ``f(x_d)``, an image of a different person, ``[N, D]``.
        margin: ``alpha > 0``.

    Returns:
        ``mean(max(||a - s||^2 - ||a - d||^2 + alpha, 0))``.
    """
    d_same = (anchor - positive).pow(2).sum(dim=1)
    d_different = (anchor - negative).pow(2).sum(dim=1)
    return F.relu(d_same - d_different + margin).mean()


def batch_hard_triplet_loss(
    embeddings: torch.Tensor, identity: torch.Tensor, margin: float = 0.2, squared: bool = True
) -> torch.Tensor:
    """Eq. (6.27) with, per anchor, its farthest positive and its nearest negative in the batch.

    Anchors without a positive or without a negative in the batch are left out.

    Args:
        embeddings: ``[B, D]``.
        identity: ``[B]`` integer identities.
        margin: ``alpha``.
        squared: squared Euclidean distances as in eq. (6.27); ``False`` uses plain ones.

    Returns:
        The mean loss over the anchors that have both (0 when none has).
    """
    dist = pairwise_distances(embeddings, squared=squared)
    pos, neg = _masks(identity)
    hardest_pos = torch.where(pos, dist, 0.0).amax(dim=1)
    hardest_neg = torch.where(neg, dist, float("inf")).amin(dim=1)
    valid = pos.any(dim=1) & neg.any(dim=1)
    return _masked_mean(F.relu(hardest_pos - hardest_neg + margin), valid)


def semi_hard_triplet_loss(
    embeddings: torch.Tensor, identity: torch.Tensor, margin: float = 0.2, squared: bool = True
) -> torch.Tensor:
    """Eq. (6.27) over every positive pair ``(a, s)`` of the batch with a semi-hard negative.

    The negative of ``(a, s)`` is the nearest ``d`` with ``d(a, d) > d(a, s)`` (semi-hard: it
    costs ``> 0`` only while it is inside the margin). When every negative is nearer than ``s``
    the farthest negative is used, as TensorFlow Addons' ``triplet_semihard_loss`` does, so that
    such a pair still trains without chasing the hardest (often mislabelled or noisy) negative.

    Args:
        embeddings: ``[B, D]``.
        identity: ``[B]`` integer identities.
        margin: ``alpha``.
        squared: squared Euclidean distances as in eq. (6.27).

    Returns:
        The mean loss over all positive pairs whose anchor has a negative (0 when none).

    Every pair is compared with every negative at once, a ``[B, B, B]`` mask: 2 M entries for a
    batch of 128.
    """
    dist = pairwise_distances(embeddings, squared=squared)  # d_as at [a, s], d_an at [a, n]
    pos, neg = _masks(identity)
    pairs = pos & neg.any(dim=1, keepdim=True)  # positive pairs whose anchor has a negative
    # [a, s, n]: n is a negative of a that is farther from a than s is
    farther = neg[:, None, :] & (dist[:, None, :] > dist[:, :, None])
    nearest_farther = torch.where(farther, dist[:, None, :], float("inf")).amin(dim=2)
    farthest = torch.where(neg, dist, float("-inf")).amax(dim=1, keepdim=True)
    d_neg = torch.where(farther.any(dim=2), nearest_farther, farthest)
    return _masked_mean(F.relu(dist - d_neg + margin), pairs)


def contrastive_loss(
    distance: torch.Tensor, same: torch.Tensor, margin: float = 0.5
) -> torch.Tensor:
    """Contrastive loss on pairs (Hadsell, Chopra and LeCun, 2006), balanced over the classes.

    Same pairs cost ``d^2``, different pairs ``max(margin - d, 0)^2``; the two means are added, so
    the many different pairs of a batch do not drown the few same ones.

    Args:
        distance: ``[N]`` Euclidean distances of the pairs.
        same: ``[N]``, 1 for pairs of one person, 0 otherwise.
        margin: distance beyond which a different pair costs nothing.

    Returns:
        ``mean_same(d^2) + mean_different(relu(margin - d)^2)`` (a missing class adds 0).
    """
    same = same.bool()
    pull = _masked_mean(distance.pow(2), same)
    push = _masked_mean(F.relu(margin - distance).pow(2), ~same)
    return pull + push


def balanced_bce(logits: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of same/different logits, positives weighted by ``#different/#same``.

    Args:
        logits: ``[N]`` logits of "same person".
        same: ``[N]``, 1 for same, 0 for different.

    Returns:
        The weighted mean, ``sum(w_i * bce_i) / sum(w_i)``.
    """
    target = same.float()
    n_same = target.sum()
    n_diff = len(target) - n_same
    both = (n_same > 0) & (n_diff > 0)
    pos_weight = torch.where(both, n_diff / n_same.clamp(min=1.0), 1.0)
    weights = torch.where(same.bool(), pos_weight, 1.0)
    losses = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    return (weights * losses).sum() / weights.sum()


def _all_pairs(embeddings: torch.Tensor, identity: torch.Tensor):
    i, j = torch.triu_indices(len(identity), len(identity), offset=1, device=identity.device)
    return embeddings[i], embeddings[j], (identity[i] == identity[j]).long()


class TripletLoss(nn.Module):
    """Eq. (6.27) over triplets mined in the batch.

    Args:
        margin: ``alpha > 0``.
        mining: ``"batch_hard"`` or ``"semi_hard"``.
        squared: squared Euclidean distances (eq. 6.27) or plain ones.
    """

    def __init__(self, margin: float = 0.2, mining: str = "batch_hard", squared: bool = True):
        super().__init__()
        if margin <= 0:
            raise ValueError(f"task.margin must be > 0 (eq. 6.27's alpha), got {margin}")
        _check("task.mining", mining, MINING)
        self.margin, self.mining, self.squared = float(margin), mining, bool(squared)

    def forward(self, embeddings: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """The mean mined triplet loss of the batch."""
        fn = batch_hard_triplet_loss if self.mining == "batch_hard" else semi_hard_triplet_loss
        return fn(embeddings, identity, self.margin, self.squared)


class ContrastiveLoss(nn.Module):
    """:func:`contrastive_loss` over every pair of the batch, on Euclidean distances.

    Args:
        margin: distance beyond which a different pair costs nothing (embeddings of unit length
            are at most 2 apart).
    """

    def __init__(self, margin: float = 0.5) -> None:
        super().__init__()
        if margin <= 0:
            raise ValueError(f"task.margin must be > 0, got {margin}")
        self.margin = float(margin)

    def forward(self, embeddings: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """The balanced contrastive loss of all pairs of the batch."""
        a, b, same = _all_pairs(embeddings, identity)
        return contrastive_loss((a - b).norm(dim=1), same, self.margin)


class ComparisonLoss(nn.Module):
    """The seed's comparison network f_c trained on every pair of the batch (seed 001 Fig 6.17).

    f_c turns a pair of embeddings into the logit of "same person"; it is trained, together with
    the embedding network, by :func:`balanced_bce` on the batch's same/different pairs.

    Args:
        comparison: the comparison network, called as ``comparison(a, b) -> logits [N]``.
    """

    def __init__(self, comparison: nn.Module) -> None:
        super().__init__()
        self.comparison = comparison

    def forward(self, embeddings: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """Balanced BCE of f_c's logits over all pairs of the batch."""
        a, b, same = _all_pairs(embeddings, identity)
        return balanced_bce(self.comparison(a, b), same)


def build_metric_loss(
    name: str,
    margin: float | None = None,
    mining: str = "batch_hard",
    comparison: nn.Module | None = None,
) -> nn.Module:
    """The loss ``name`` (``"triplet"``, ``"contrastive"`` or ``"comparison"``).

    Args:
        name: which loss.
        margin: the triplet's alpha (on squared distances) or the contrastive margin (on
            distances); ``None`` takes the loss's default, 0.2 or 0.5.
        mining: how the triplet loss picks its triplets (``"batch_hard"`` or ``"semi_hard"``).
        comparison: the comparison network that ``"comparison"`` trains.

    Returns:
        A module called as ``loss(embeddings, identity) -> scalar``.
    """
    _check("task.loss", name, LOSSES)
    if name == "triplet":
        return TripletLoss(0.2 if margin is None else margin, mining)
    if name == "contrastive":
        return ContrastiveLoss(0.5 if margin is None else margin)
    if comparison is None:
        raise ValueError("task.loss=comparison needs a comparison network")
    return ComparisonLoss(comparison)
