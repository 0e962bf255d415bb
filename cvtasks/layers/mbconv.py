"""EfficientNet's mobile inverted bottleneck (MBConv) with squeeze-and-excitation.

EfficientNet (seed 001 §6.5, Fig 6.15) scales one baseline built from MBConv blocks:
1x1 expansion → depthwise kxk → squeeze-and-excitation → 1x1 linear projection, with a residual
connection when the block keeps the shape, dropped per sample during training (stochastic depth).

The layout is torchvision's ``MBConv``, so EfficientNet checkpoints map onto it:

=================  ==============================  =========================================
ours               torchvision                      what
=================  ==============================  =========================================
``block.0``        ``block.0`` (absent at ratio 1)  1x1 expand ``ConvNormAct``, SiLU
``block.1``        ``block.1``                      depthwise kxk ``ConvNormAct``, SiLU
``block.2``        ``block.2``                      :class:`SqueezeExcite` (``fc1``, ``fc2``)
``block.3``        ``block.3``                      1x1 project ``ConvNormAct``, no activation
``drop_path``      ``stochastic_depth``             per-sample residual drop (no parameters)
=================  ==============================  =========================================

(indices shift down by one when ``expand_ratio == 1``, in both). Our ``ConvNormAct`` holds
``conv``/``bn`` where torchvision's ``Conv2dNormActivation`` holds ``0``/``1``:
:func:`cvtasks.layers.conv.remap_conv_norm_act_keys` renames them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cvtasks.layers.activations import make_activation
from cvtasks.layers.conv import ActLayer, ConvNormAct, Padding
from cvtasks.layers.drop import DropPath
from cvtasks.layers.norm import NormLayer


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never more than 10% down.

    The TensorFlow MobileNet/EfficientNet rule (torchvision ``_make_divisible``), used for the
    expanded channels and for width scaling.

    Args:
        value: the unrounded channel count (``in_chs · expand_ratio``, ``chs · width_mult``).
        divisor: the multiple.
        min_value: the smallest result (``divisor`` when ``None``).

    Returns:
        The rounded count.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: rescale each channel by a gate computed from all channels.

    ``x · gate(fc2(act(fc1(mean_hw(x)))))``, with ``fc1``/``fc2`` 1x1 convs with bias, as in
    torchvision's ``SqueezeExcitation``.

    Args:
        chs: channels of ``x``.
        rd_chs: reduced (squeeze) channels.
        act: activation between ``fc1`` and ``fc2`` (SiLU in EfficientNet).
        gate: the gate (sigmoid).
    """

    def __init__(
        self,
        chs: int,
        rd_chs: int,
        act: str | type[nn.Module] | nn.Module = "silu",
        gate: str | type[nn.Module] | nn.Module = "sigmoid",
    ) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(chs, rd_chs, 1)
        self.act = make_activation(act)
        self.fc2 = nn.Conv2d(rd_chs, chs, 1)
        self.gate = make_activation(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, chs, H, W]`` rescaled per sample and channel."""
        scale = x.mean((2, 3), keepdim=True)
        scale = self.fc2(self.act(self.fc1(scale)))
        return x * self.gate(scale)


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-and-excitation (EfficientNet's block).

    Args:
        in_chs: input channels.
        out_chs: output channels.
        kernel_size: depthwise kernel (3 or 5 in EfficientNet).
        stride: depthwise stride.
        expand_ratio: expanded channels are ``make_divisible(in_chs · expand_ratio, 8)``; 1
            builds no expansion conv.
        se_ratio: squeeze channels are ``max(1, int(in_chs · se_ratio))``, counted from the
            block's *input* channels as torchvision and the EfficientNet reference do; 0 or
            ``None`` builds no squeeze-and-excitation.
        drop_path: stochastic depth, the probability of dropping the residual branch of a
            sample in training (:class:`~cvtasks.layers.DropPath`).
        norm_layer: norm after each conv.
        act_layer: activation after the expansion, the depthwise conv and inside the SE.
        norm_kwargs: norm keywords (``{"eps": 1e-3}`` for EfficientNetV2-style checkpoints).
        padding: padding of the depthwise conv (``"same"``; ``"tf_same"`` for TF weights).

    Attributes:
        block: ``nn.Sequential`` of expand (unless ratio 1), depthwise, SE (unless off), project.
        has_skip: whether the input is added back (``stride == 1`` and ``in_chs == out_chs``).
        out_chs: output channels.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int,
        expand_ratio: float,
        se_ratio: float | None = 0.25,
        drop_path: float = 0.0,
        norm_layer: NormLayer = "batchnorm",
        act_layer: ActLayer = "silu",
        norm_kwargs: dict[str, Any] | None = None,
        padding: Padding = "same",
    ) -> None:
        super().__init__()
        opts = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        mid_chs = in_chs if expand_ratio == 1 else make_divisible(in_chs * expand_ratio, 8)
        layers: list[nn.Module] = []
        if mid_chs != in_chs:
            layers.append(ConvNormAct(in_chs, mid_chs, 1, act_layer=act_layer, **opts))
        layers.append(
            ConvNormAct(
                mid_chs,
                mid_chs,
                kernel_size,
                stride=stride,
                padding=padding,
                groups=mid_chs,
                act_layer=act_layer,
                **opts,
            )
        )
        if se_ratio:
            rd_chs = max(1, int(in_chs * se_ratio))
            se_act = "identity" if act_layer is None else act_layer
            layers.append(SqueezeExcite(mid_chs, rd_chs, act=se_act))
        layers.append(ConvNormAct(mid_chs, out_chs, 1, act_layer=None, **opts))
        self.block = nn.Sequential(*layers)
        self.has_skip = stride == 1 and in_chs == out_chs
        self.drop_path = DropPath(drop_path)
        self.out_chs = out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_chs, H, W] -> [B, out_chs, ceil(H / stride), ceil(W / stride)]``."""
        out = self.block(x)
        if self.has_skip:
            out = self.drop_path(out) + x
        return out
