"""Stochastic depth: drop a residual branch per sample (Huang et al. 2016, as timm's ``drop.py``).

A residual block computes ``x + F(x)``; in training, :class:`DropPath` zeroes ``F(x)`` for a random
subset of the batch, so that sample passes through the shortcut alone, and scales the kept
branches by ``1 / (1 - p)`` so that the expected output is unchanged. The residual blocks
(:class:`~cvtasks.layers.BasicBlock`, :class:`~cvtasks.layers.Bottleneck`,
:class:`~cvtasks.layers.MBConv`) take the probability as their ``drop_path`` argument.
"""

from __future__ import annotations

import torch
from torch import nn


def drop_path(x: torch.Tensor, p: float = 0.0, training: bool = False) -> torch.Tensor:
    """Stochastic depth: zero whole samples of ``x`` with probability ``p``, scale the rest.

    Each sample of the batch is kept with probability ``1 - p`` and then divided by ``1 - p``,
    so the expected value is ``x``; at eval (``training=False``) or ``p == 0`` it is ``x``.
    Applied to a residual branch it drops the whole block for that sample.

    Args:
        x: ``[B, ...]``.
        p: drop probability in ``[0, 1]``.
        training: whether to drop.

    Returns:
        ``x`` with some samples zeroed and the others scaled by ``1 / (1 - p)``.

    Raises:
        ValueError: ``p`` outside ``[0, 1]``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"drop path probability must be in [0, 1], got {p!r}")
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    if keep > 0.0:
        mask = mask.div_(keep)
    return x * mask


class DropPath(nn.Module):
    """:func:`drop_path` as a module, active in training mode only.

    Args:
        p: drop probability in ``[0, 1]``.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"drop path probability must be in [0, 1], got {p!r}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Drop whole samples of ``x`` with probability ``p`` during training."""
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
