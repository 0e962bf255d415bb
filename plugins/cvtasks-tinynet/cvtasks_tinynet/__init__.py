"""cvtasks-tinynet: an example plugin that registers the ``tinynet`` backbone.

cvtasks imports this package through its ``cvtasks.plugins`` entry point the first time a
registry is read; the import registers the backbone. The Hydra config ``conf/backbone/tinynet.yaml``
beside this file makes ``python train.py backbone=tinynet`` work once the package is installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cvtasks.backbones import Backbone, build_with_weights
from cvtasks.registry import BACKBONES

__all__ = ["TinyNet", "tinynet"]


class TinyNet(Backbone):
    """A compact CNN: one conv3x3(stride 2)-BN-ReLU per stage, each stage halving the map.

    Args:
        in_chans: input channels.
        num_classes: logits of ``forward``; 0 returns pooled last-stage features.
        drop_rate: dropout before the classifier.
        widths: output channels of each stage (one stage per entry).
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 0,
        drop_rate: float = 0.0,
        widths: Sequence[int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]  # Hydra passes a ListConfig
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be one or more positive ints, got {widths}")
        stages = []
        for width in widths:
            stages.append(
                nn.Sequential(
                    nn.Conv2d(in_chans, width, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                )
            )
            in_chans = width
        self.stages = nn.ModuleList(stages)
        self.feature_info = [
            dict(num_chs=w, reduction=2 ** (i + 1), module=f"stages.{i}")
            for i, w in enumerate(widths)
        ]
        self.num_features = widths[-1]
        self.init_head(num_classes, drop_rate)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One map per stage: ``[B, widths[i], H / 2**(i+1), W / 2**(i+1)]``."""
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


@BACKBONES.register("tinynet")
def tinynet(**kwargs: Any) -> TinyNet:
    """TinyNet with ``widths=(16, 32, 64)`` unless given.

    ``pretrained`` is a local weights file saved from a ``TinyNet`` of the same widths.
    """
    return build_with_weights(TinyNet, "tinynet", **kwargs)
