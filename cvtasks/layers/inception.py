"""The Inception module: four parallel paths concatenated along the channels.

Seed 001 Fig 6.13 (§6.5, "Inception and Networks within a Network"), on a 192x28x28 input:

========  =====================================  ==============  ================================
path      layers                                 output          parameters (conv + bias)
========  =====================================  ==============  ================================
branch1   1x1 conv → 64                          64x28x28        192·64 + 64 = 12,352
branch2   1x1 conv → 96, 3x3 conv → 128          128x28x28       18,528 + 96·9·128 + 128 = 129,248
branch3   1x1 conv → 16, 5x5 conv → 32           32x28x28        3,088 + 16·25·32 + 32 = 15,920
branch4   3x3 max-pool stride 1, 1x1 conv → 32   32x28x28        192·32 + 32 = 6,176
concat                                           256x28x28       163,696
========  =====================================  ==============  ================================

The figure's 32 channels on the pooling path are right (256 = 64 + 128 + 32 + 32); the text's
192 there is a typo. Each conv is a :class:`ConvNormAct` ("same" padding, ReLU; BatchNorm by
default, which replaces each conv bias by a norm's scale and shift; ``norm_layer=None`` gives the
original 2014 convolutions with bias and the parameter count above).

Attribute names are torchvision's (``branch1``, ``branch2.0``, ``branch2.1``, ``branch3.0``,
``branch3.1``, ``branch4.1``, each with ``conv`` and ``bn``), so torchvision GoogLeNet
checkpoints map key for key. torchvision's third path uses a 3x3 conv (its issue #906); ours
follows the seed with a real 5x5, and ``branch3_kernel_size=3`` gives torchvision's shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cvtasks.layers.conv import ActLayer, ConvNormAct
from cvtasks.layers.norm import NormLayer


class Inception(nn.Module):
    """Inception module (seed 001 Fig 6.13): ``1x1 | 1x1→3x3 | 1x1→5x5 | maxpool→1x1``.

    Args:
        in_chs: input channels (192 in the seed's figure).
        ch1x1: channels of the 1x1 path (64).
        ch3x3red: 1x1 reduction before the 3x3 conv (96).
        ch3x3: channels of the 3x3 path (128).
        ch5x5red: 1x1 reduction before the 5x5 conv (16).
        ch5x5: channels of the 5x5 path (32).
        pool_proj: 1x1 projection after the 3x3 stride-1 max-pool (32).
        conv_layer: builds each conv as ``conv_layer(in, out, kernel_size=k, norm_layer=...,
            act_layer=..., norm_kwargs=...)``; :class:`ConvNormAct` by default.
        norm_layer: norm after each conv (name, class or ``None``).
        act_layer: activation after each norm.
        norm_kwargs: norm keywords (``{"eps": 1e-3}`` for torchvision's GoogLeNet).
        branch3_kernel_size: kernel of the third path's second conv: 5 as in the seed, 3 as in
            torchvision's GoogLeNet.

    Attributes:
        out_chs: ``ch1x1 + ch3x3 + ch5x5 + pool_proj`` (256 in the seed's figure).
    """

    def __init__(
        self,
        in_chs: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        conv_layer: Callable[..., nn.Module] = ConvNormAct,
        norm_layer: NormLayer = "batchnorm",
        act_layer: ActLayer = "relu",
        norm_kwargs: dict[str, Any] | None = None,
        branch3_kernel_size: int = 5,
    ) -> None:
        super().__init__()
        opts = dict(norm_layer=norm_layer, act_layer=act_layer, norm_kwargs=norm_kwargs)

        def conv(cin: int, cout: int, k: int) -> nn.Module:
            return conv_layer(cin, cout, kernel_size=k, **opts)

        self.branch1 = conv(in_chs, ch1x1, 1)
        self.branch2 = nn.Sequential(conv(in_chs, ch3x3red, 1), conv(ch3x3red, ch3x3, 3))
        self.branch3 = nn.Sequential(
            conv(in_chs, ch5x5red, 1), conv(ch5x5red, ch5x5, branch3_kernel_size)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1), conv(in_chs, pool_proj, 1)
        )
        self.out_chs = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_chs, H, W] -> [B, out_chs, H, W]``: the four paths concatenated."""
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)
