"""Helpers of the backbone tests, imported as ``from tests.backbones.conftest import ...``."""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def randomize_bn(model: M) -> M:
    """Random affine and running statistics in every BatchNorm, so that eval BN matters.

    Drawn from a generator of its own (seed 1), so the global seed stays as it was; returns
    ``model`` in eval mode.
    """
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)
                m.running_mean.uniform_(-0.2, 0.2, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return model.eval()
