"""Helpers of the layer tests, imported as ``from tests.layers.conftest import randomize_bn``."""

from __future__ import annotations

from typing import TypeVar

from torch import nn

M = TypeVar("M", bound=nn.Module)


def randomize_bn(module: M) -> M:
    """Random running statistics and affine weights in every BatchNorm, so eval-mode BN matters.

    Drawn from torch's global generator (seed it first); ``module`` is changed in place and
    returned.
    """
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.5, 0.5)
    return module
