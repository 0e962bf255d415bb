"""Residual blocks: ``act(F(x) + shortcut(x))`` (seed 001 §6.5, Fig 6.14).

The shortcut bypasses the block's convolutions and is added "before the application of an
activation function". When the block changes the channel count or the resolution the identity no
longer fits, and "we use one by one convolutions" (seed 001 §6.5): the shortcut becomes a
strided 1x1 conv + norm (``downsample``, torchvision's option B).

Layout and attribute names are torchvision's ResNet (v1.5: the stride of a :class:`Bottleneck`
sits on its 3x3 conv), so a torchvision ResNet state dict loads key for key:

* :class:`BasicBlock`: ``conv1`` (3x3, stride), ``bn1``, ``conv2`` (3x3), ``bn2``,
  ``downsample.0`` (1x1 conv), ``downsample.1`` (norm).
* :class:`Bottleneck`: ``conv1`` (1x1), ``bn1``, ``conv2`` (3x3, stride, groups), ``bn2``,
  ``conv3`` (1x1 → ``mid_chs · expansion``), ``bn3``, ``downsample.0/1``.

Both list their conv/norm pairs in ``fuse_pairs`` for :func:`cvtasks.layers.fuse.fuse_batchnorm`,
and both take ``drop_path``, the stochastic depth of their residual branch: ``act(drop_path(F(x))
+ shortcut(x))``. At 0 (the default) the branch is never dropped and the block is exactly
torchvision's; ``drop_path`` holds no parameters, so the state-dict keys are the same either way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cvtasks.layers.activations import make_activation
from cvtasks.layers.conv import ActLayer
from cvtasks.layers.drop import DropPath
from cvtasks.layers.norm import NormLayer, make_norm


def _shortcut(
    in_chs: int,
    out_chs: int,
    stride: int,
    norm_layer: NormLayer,
    norm_kwargs: dict[str, Any] | None,
    avg_down: bool = False,
) -> nn.Module | None:
    """``None`` (identity) when the shapes match, else a strided 1x1 projection + norm.

    With ``avg_down`` the stride moves to a 2x2 average pool in front of an unstrided 1x1 conv,
    so every input pixel reaches the shortcut (timm's ``downsample_avg``, the ResNet-D trick of
    its ``resnet10t``); the pool is ``nn.Identity`` at stride 1, keeping timm's keys
    ``downsample.1`` (conv) and ``downsample.2`` (norm).
    """
    if stride == 1 and in_chs == out_chs:
        return None
    norm = make_norm(norm_layer, out_chs, norm_kwargs)
    if not avg_down:
        conv = nn.Conv2d(in_chs, out_chs, kernel_size=1, stride=stride, bias=False)
        return nn.Sequential(conv, norm)
    pool: nn.Module = (
        nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
        if stride > 1
        else nn.Identity()
    )
    return nn.Sequential(pool, nn.Conv2d(in_chs, out_chs, kernel_size=1, bias=False), norm)


def _act(act_layer: ActLayer) -> nn.Module:
    return nn.Identity() if act_layer is None else make_activation(act_layer)


def _drop_path(p: float) -> nn.Module:
    """:class:`DropPath` for a rate above 0, else ``nn.Identity`` (torchvision's graph)."""
    return DropPath(p) if p > 0 else nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut: ResNet-18/34's block (expansion 1).

    Args:
        in_chs: input channels.
        out_chs: output channels.
        stride: stride of the first conv (and of the projection shortcut).
        dilation: dilation (and padding) of both 3x3 convs, for dilated ResNets.
        norm_layer: norm after each conv (name, class or callable of the channel count).
        act_layer: activation after ``bn1`` and after the addition.
        norm_kwargs: norm keywords.
        drop_path: stochastic depth, the probability of dropping the residual branch of a
            sample in training.
        avg_down: a projection shortcut average-pools instead of striding its 1x1 conv.

    Attributes:
        out_chs: output channels.
        downsample: the projection shortcut, ``None`` for the identity.
    """

    expansion: int = 1
    fuse_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        dilation: int = 1,
        norm_layer: NormLayer = "batchnorm",
        act_layer: ActLayer = "relu",
        norm_kwargs: dict[str, Any] | None = None,
        drop_path: float = 0.0,
        avg_down: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_chs, out_chs, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn1 = make_norm(norm_layer, out_chs, norm_kwargs)
        self.act1 = _act(act_layer)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = make_norm(norm_layer, out_chs, norm_kwargs)
        self.downsample = _shortcut(in_chs, out_chs, stride, norm_layer, norm_kwargs, avg_down)
        self.act2 = _act(act_layer)
        self.drop_path = _drop_path(drop_path)
        self.out_chs = out_chs

    def zero_init_last(self) -> None:
        """Zero the last norm's scale so that the block starts as its shortcut."""
        if getattr(self.bn2, "weight", None) is not None:
            nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_chs, H, W] -> [B, out_chs, ceil(H / stride), ceil(W / stride)]``."""
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(self.drop_path(out) + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce → 3x3 (strided) → 1x1 expand, with a shortcut: ResNet-50/101/152's block.

    Args:
        in_chs: input channels.
        mid_chs: channels of the 3x3 conv (torchvision's ``planes``; ``width`` for ResNeXt).
        stride: stride of the 3x3 conv (torchvision v1.5) and of the projection shortcut.
        groups: groups of the 3x3 conv (ResNeXt).
        dilation: dilation (and padding) of the 3x3 conv.
        expansion: output channels are ``mid_chs · expansion``.
        norm_layer: norm after each conv.
        act_layer: activation after ``bn1``, ``bn2`` and the addition.
        norm_kwargs: norm keywords.
        drop_path: stochastic depth, the probability of dropping the residual branch of a
            sample in training.
        avg_down: a projection shortcut average-pools instead of striding its 1x1 conv.

    Attributes:
        out_chs: ``mid_chs · expansion``.
        downsample: the projection shortcut, ``None`` for the identity.
    """

    expansion: int = 4
    fuse_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(
        self,
        in_chs: int,
        mid_chs: int,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        expansion: int = 4,
        norm_layer: NormLayer = "batchnorm",
        act_layer: ActLayer = "relu",
        norm_kwargs: dict[str, Any] | None = None,
        drop_path: float = 0.0,
        avg_down: bool = False,
    ) -> None:
        super().__init__()
        self.expansion = expansion
        out_chs = mid_chs * expansion
        self.conv1 = nn.Conv2d(in_chs, mid_chs, 1, bias=False)
        self.bn1 = make_norm(norm_layer, mid_chs, norm_kwargs)
        self.act1 = _act(act_layer)
        self.conv2 = nn.Conv2d(
            mid_chs,
            mid_chs,
            3,
            stride=stride,
            padding=dilation,
            dilation=dilation,
            groups=groups,
            bias=False,
        )
        self.bn2 = make_norm(norm_layer, mid_chs, norm_kwargs)
        self.act2 = _act(act_layer)
        self.conv3 = nn.Conv2d(mid_chs, out_chs, 1, bias=False)
        self.bn3 = make_norm(norm_layer, out_chs, norm_kwargs)
        self.downsample = _shortcut(in_chs, out_chs, stride, norm_layer, norm_kwargs, avg_down)
        self.act3 = _act(act_layer)
        self.drop_path = _drop_path(drop_path)
        self.out_chs = out_chs

    def zero_init_last(self) -> None:
        """Zero the last norm's scale so that the block starts as its shortcut."""
        if getattr(self.bn3, "weight", None) is not None:
            nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_chs, H, W] -> [B, mid_chs·expansion, ceil(H / stride), ceil(W / stride)]``."""
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.act3(self.drop_path(out) + shortcut)
