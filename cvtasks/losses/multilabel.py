"""Losses of multi-label classification: one independent yes/no per class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

MULTILABEL_LOSSES = ("bce", "asl")


def asymmetric_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma_neg: float = 4.0,
    gamma_pos: float = 0.0,
    clip: float = 0.05,
) -> torch.Tensor:
    """Asymmetric loss (Ridnik et al. 2021, "Asymmetric Loss For Multi-Label Classification").

    Negatives are focused harder than positives (``gamma_neg > gamma_pos``) and their
    probability is shifted down by ``clip``, so the many easy negatives of an image weigh
    little. With ``gamma_neg = gamma_pos = clip = 0`` it is binary cross-entropy.

    Args:
        logits: raw scores ``[B, C]``.
        targets: multi-hot targets ``[B, C]`` in {0, 1}.
        gamma_neg: focusing exponent of the negatives.
        gamma_pos: focusing exponent of the positives.
        clip: probability margin subtracted from the negatives' probability.

    Returns:
        The mean over images and classes (the scale of ``binary_cross_entropy_with_logits``,
        so a learning rate carries over between the two losses).
    """
    logits, targets = logits.float(), targets.float()
    # log-sigmoids are exact where log(sigmoid) would underflow
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    prob = logits.sigmoid()
    prob_neg = (prob - clip).clamp(min=0) if clip > 0 else prob
    log_not_p_neg = torch.log1p(-prob_neg).clamp(min=-100) if clip > 0 else log_not_p
    positive = targets * log_p * (1 - prob).pow(gamma_pos)
    negative = (1 - targets) * log_not_p_neg * prob_neg.pow(gamma_neg)
    return -(positive + negative).mean()


class MultilabelLoss(nn.Module):
    """Binary cross-entropy (``name: bce``) or the asymmetric loss (``name: asl``).

    Args:
        name: ``bce`` or ``asl``.
        pos_weight: for ``bce``, a weight of the positives of every class (``None``: 1).
        gamma_neg: for ``asl``, see :func:`asymmetric_loss`.
        gamma_pos: for ``asl``, see :func:`asymmetric_loss`.
        clip: for ``asl``, see :func:`asymmetric_loss`.
    """

    def __init__(
        self,
        name: str = "bce",
        pos_weight: float | None = None,
        gamma_neg: float = 4.0,
        gamma_pos: float = 0.0,
        clip: float = 0.05,
    ) -> None:
        super().__init__()
        if name not in MULTILABEL_LOSSES:
            raise ValueError(
                f"task.loss.name={name!r} is not a multi-label loss; use one of "
                f"{', '.join(MULTILABEL_LOSSES)}"
            )
        if not 0.0 <= clip < 1.0:
            raise ValueError(f"task.loss.clip must be in [0, 1), got {clip}")
        if gamma_neg < 0 or gamma_pos < 0:
            raise ValueError(
                f"task.loss.gamma_neg and gamma_pos must be >= 0, got {gamma_neg}, {gamma_pos}"
            )
        self.name = name
        self.pos_weight = None if pos_weight is None else float(pos_weight)
        self.gamma_neg, self.gamma_pos, self.clip = float(gamma_neg), float(gamma_pos), float(clip)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> MultilabelLoss:
        """Built from ``task.loss`` (``None``: plain binary cross-entropy)."""
        return cls(**dict(cfg or {}))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean loss over images and classes."""
        if self.name == "asl":
            return asymmetric_loss(logits, targets, self.gamma_neg, self.gamma_pos, self.clip)
        pos_weight = None
        if self.pos_weight is not None:
            pos_weight = torch.full((logits.shape[1],), self.pos_weight, device=logits.device)
        return F.binary_cross_entropy_with_logits(
            logits.float(), targets.float(), pos_weight=pos_weight
        )
