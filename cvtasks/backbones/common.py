"""What several backbone families share beyond :class:`~cvtasks.backbones.base.Backbone`.

* :func:`run_stages`: the feature maps of a ``Sequential`` of stages, run one after the other.
* :func:`init_torchvision_weights`: torchvision's initialisation of VGG, EfficientNet and
  MobileNetV2, so that training from scratch follows its recipes.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable

import torch
from torch import nn


def run_stages(
    stages: Iterable[nn.Module], x: torch.Tensor, keep: Container[int] | None = None
) -> list[torch.Tensor]:
    """Run ``x`` through ``stages`` in order and collect their outputs.

    Args:
        stages: the stages, shallow to deep (an ``nn.Sequential`` or ``nn.ModuleList``).
        x: the input of the first stage.
        keep: indices of the stages whose outputs are features; ``None`` keeps every stage's.

    Returns:
        The kept outputs, shallow to deep.
    """
    features = []
    for i, stage in enumerate(stages):
        x = stage(x)
        if keep is None or i in keep:
            features.append(x)
    return features


def init_torchvision_weights(
    model: nn.Module, linear_init: Callable[[torch.Tensor], object]
) -> None:
    """Initialise ``model`` as torchvision initialises its VGG, EfficientNet and MobileNetV2.

    Every ``Conv2d`` gets He normal weights on fan-out and a zero bias; every ``BatchNorm2d``
    weight 1 and bias 0; every ``Linear`` ``linear_init(weight)`` and a zero bias. Modules are
    visited in ``model.modules()`` order, so a seeded run draws the same weights every time.

    Args:
        model: the network, initialised in place.
        linear_init: fills a linear layer's weight in place, e.g.
            ``partial(nn.init.normal_, mean=0.0, std=0.01)``.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            # The ReLU gain, sqrt(2); torchvision's EfficientNet and MobileNetV2 leave
            # kaiming_normal_'s default (leaky_relu with slope 0), which is the same number.
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            linear_init(module.weight)
            nn.init.zeros_(module.bias)
