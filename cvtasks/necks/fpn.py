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
        outputs: how many of the finest levels to return (default: all). The top-down path
            still runs through every level; only the returned ones get a smoothing convolution,
            so a head that reads the finest map alone leaves no parameter without a gradient
            (which DDP refuses) and no convolution computed for nothing.
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
        outputs: int | None = None,
        norm_layer: str | None = "batchnorm",
        act_layer: str | type[nn.Module] | None = "relu",
    ) -> None:
        super().__init__()
        if int(channels) < 1:
            raise ValueError(f"neck.channels must be >= 1, got {channels}")
        channels = int(channels)
        self.levels = check_levels(levels, len(feature_info))
        self.num_outputs = len(self.levels) if outputs is None else int(outputs)
        if not 1 <= self.num_outputs <= len(self.levels):
            raise ValueError(
                f"neck.outputs must be between 1 and the {len(self.levels)} levels read, "
                f"got {outputs}"
            )
        # Laterals are plain 1x1 convolutions with a bias, as in the paper: the sum that
        # follows is normalized by the smoothing convolution.
        self.laterals = nn.ModuleList(
            nn.Conv2d(int(feature_info[i]["num_chs"]), channels, 1) for i in self.levels
        )
        self.smooth = nn.ModuleList(
            ConvNormAct(channels, channels, 3, norm_layer=norm_layer, act_layer=act_layer)
            for _ in range(self.num_outputs)
        )
        self.feature_info = [
            {
                "num_chs": channels,
                "reduction": int(feature_info[i]["reduction"]),
                "module": f"smooth.{j}",
            }
            for j, i in enumerate(self.levels[: self.num_outputs])
        ]
        self.num_features = channels

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """One map per returned level, shallow to deep, each ``[B, channels, h_i, w_i]`` of its
        stage."""
        if len(features) <= self.levels[-1]:
            raise ValueError(
                f"FPN reads backbone stages {self.levels} but got {len(features)} feature maps"
            )
        outputs: list[torch.Tensor] = []
        top: torch.Tensor | None = None
        for position in reversed(range(len(self.levels))):
            merged = self.laterals[position](features[self.levels[position]])
            if top is not None:
                merged = merged + F.interpolate(top, size=merged.shape[-2:], mode="nearest")
            top = merged
            if position < self.num_outputs:
                outputs.append(self.smooth[position](merged))
        return outputs[::-1]
