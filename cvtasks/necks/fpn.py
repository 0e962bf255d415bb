"""Feature Pyramid Network (Lin et al., "Feature Pyramid Networks for Object Detection", 2017).

Every chosen backbone stage gets a 1x1 lateral convolution to ``channels``; from the deepest
stage up, the running map is upsampled (nearest, to the next shallower stage's size) and added
to that stage's lateral; a 3x3 :class:`~cvtasks.layers.ConvNormAct` then smooths each sum (the
paper's 3x3 convolution "to reduce the aliasing effect of upsampling"). Every output has
``channels`` channels at the reduction of its stage, so coarse semantics reach the fine maps.

Only ``feature_info`` is read: any backbone works (cvtasks', ``timm/...``, a plugin's), with or
without a stride-2 stem stage, and with odd map sizes (upsampling goes to the exact size).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvtasks.layers import ConvNormAct
from cvtasks.registry import NECKS


def check_levels(levels: Sequence[int] | None, num_stages: int) -> list[int]:
    """The stage indices a neck reads: all stages for ``None``, else ``levels`` checked.

    Args:
        levels: indices into the backbone's ``feature_info`` (negative ones count from the end).
        num_stages: how many stages the backbone has.

    Raises:
        ValueError: no level, an index out of range, or indices not strictly increasing.
    """
    if levels is None:
        return list(range(num_stages))
    chosen = [int(i) + num_stages if int(i) < 0 else int(i) for i in levels]
    if not chosen or any(not 0 <= i < num_stages for i in chosen):
        raise ValueError(
            f"neck.levels must be indices of backbone stages 0..{num_stages - 1}, got "
            f"{list(levels)}; e.g. neck.levels=[1,2,3] or null for all stages"
        )
    if any(a >= b for a, b in itertools.pairwise(chosen)):
        raise ValueError(
            f"neck.levels must be strictly increasing (shallow to deep), got {list(levels)}"
        )
    return chosen


@NECKS.register("fpn")
class FPN(nn.Module):
    """Feature Pyramid Network: 1x1 laterals, nearest top-down upsampling + add, 3x3 smoothing.

    Args:
        feature_info: the backbone's stages, shallow to deep.
        channels: width of every output.
        levels: indices of the stages to use, shallow to deep (default: every stage). The
            outputs follow them one to one.
        norm_layer: norm of the smoothing convolutions (:class:`~cvtasks.layers.ConvNormAct`).
        act_layer: activation of the smoothing convolutions.

    Attributes:
        feature_info: one entry per output: ``num_chs=channels``, the stage's ``reduction``,
            ``module`` naming the smoothing convolution.
        levels: the stage indices read from the backbone's feature list.
    """

    def __init__(
        self,
        feature_info: Sequence[Mapping[str, Any]],
        channels: int = 64,
        levels: Sequence[int] | None = None,
        norm_layer: str | None = "batchnorm",
        act_layer: str | type[nn.Module] | None = "relu",
    ) -> None:
        super().__init__()
        if int(channels) < 1:
            raise ValueError(f"neck.channels must be >= 1, got {channels}")
        channels = int(channels)
        self.levels = check_levels(levels, len(feature_info))
        # Laterals are plain 1x1 convolutions with a bias, as in the paper: the sum that
        # follows is normalized by the smoothing convolution.
        self.laterals = nn.ModuleList(
            nn.Conv2d(int(feature_info[i]["num_chs"]), channels, 1) for i in self.levels
        )
        self.smooth = nn.ModuleList(
            ConvNormAct(channels, channels, 3, norm_layer=norm_layer, act_layer=act_layer)
            for _ in self.levels
        )
        self.feature_info = [
            {
                "num_chs": channels,
                "reduction": int(feature_info[i]["reduction"]),
                "module": f"smooth.{j}",
            }
            for j, i in enumerate(self.levels)
        ]
        self.num_features = channels

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """One map per level, shallow to deep, each ``[B, channels, h_i, w_i]`` of its stage."""
        if len(features) <= self.levels[-1]:
            raise ValueError(
                f"FPN reads backbone stages {self.levels} but got {len(features)} feature maps"
            )
        outputs: list[torch.Tensor] = []
        top: torch.Tensor | None = None
        for index, lateral, smooth in zip(
            reversed(self.levels), reversed(self.laterals), reversed(self.smooth)
        ):
            merged = lateral(features[index])
            if top is not None:
                merged = merged + F.interpolate(top, size=merged.shape[-2:], mode="nearest")
            top = merged
            outputs.append(smooth(merged))
        return outputs[::-1]
