"""ResNet-18/34/50/101/152: residual stages behind a strided 7x7 stem.

A residual block adds its input to the output of a few convolutions, "typically before the
application of an activation function" (seed 001 Fig 6.14, l.5814-5818), so a block whose
convolutions output about zero is about the identity (l.5832-5862), the function the seed
hypothesises deep layers should stay near (l.5785-5800). When a block changes the channel count
or the resolution, "we use one by one convolutions" on the shortcut (l.5829-5830).
The blocks are :class:`cvtasks.layers.BasicBlock` (two 3x3) and :class:`cvtasks.layers.Bottleneck`
(1x1 → 3x3 → 1x1, 4x expansion, stride on the 3x3 as in torchvision's ResNet v1.5).

====================  ======================  ==========  ===========  =========
modules               what                    ResNet-18   ResNet-50    reduction
                                              and -34     -101, -152
====================  ======================  ==========  ===========  =========
``conv1 bn1 act1``    7x7/2 conv, norm, ReLU  64          64           2
``maxpool``           3x3/2 max-pool          64          64           4
``layer1``            blocks at stride 1      64          256          4
``layer2``            first block stride 2    128         512          8
``layer3``            first block stride 2    256         1024         16
``layer4``            first block stride 2    512         2048         32
``global_pool fc``    average pool, linear    classes     classes
====================  ======================  ==========  ===========  =========

Blocks per stage: 18 (2, 2, 2, 2), 34 (3, 4, 6, 3) with :class:`BasicBlock`; 50 (3, 4, 6, 3),
101 (3, 4, 23, 3), 152 (3, 8, 36, 3) with :class:`Bottleneck`. ``forward_features`` returns the
stem activation (``act1``, before the max-pool) and the four stages, as timm's ``feature_info``
does, so decoders get every scale from 1/2 to 1/32.

Module names are torchvision's, which timm's ResNet shares, so both libraries' checkpoints load
key for key; only the stem (``stem_weight``) is re-initialised when ``in_chans`` differs from
the checkpoint's. ``drop_path_rate`` drops residual branches per sample (stochastic
depth), rising linearly from 0 at the first block to the rate at the last, as in timm.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cvtasks.backbones.base import Backbone, load_pretrained
from cvtasks.layers import BasicBlock, Bottleneck, DropPath, make_activation, make_norm
from cvtasks.layers.norm import NormLayer
from cvtasks.registry import BACKBONES

STAGE_WIDTHS = (64, 128, 256, 512)  # conv widths per stage; a Bottleneck outputs 4x as many
STEM_WIDTH = 64


class _DropsBranch(nn.Module):
    """Mixin for a residual block: a ``drop_path_rate`` keyword and the ``drop_path`` it builds.

    ``drop_path`` has no parameters, so the block keeps its parent's parameters and state-dict
    keys; it is ``nn.Identity`` at rate 0, so the default network is exactly torchvision's graph.
    """

    def __init__(self, *args: Any, drop_path_rate: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()


class ResBasicBlock(_DropsBranch, BasicBlock):
    """:class:`BasicBlock` whose residual branch is dropped per sample with ``drop_path_rate``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``act(drop_path(F(x)) + shortcut(x))``."""
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(self.drop_path(out) + shortcut)


class ResBottleneck(_DropsBranch, Bottleneck):
    """:class:`Bottleneck` whose residual branch is dropped per sample with ``drop_path_rate``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``act(drop_path(F(x)) + shortcut(x))``."""
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.act3(self.drop_path(out) + shortcut)


class ResNet(Backbone):
    """A ResNet (see the module docstring for the stage table and the seed citations).

    Args:
        block: :class:`ResBasicBlock` or :class:`ResBottleneck` (any block class taking
            ``(in_chs, width, stride=, drop_path_rate=, norm_layer=, act_layer=)`` and exposing
            ``out_chs``).
        layers: blocks in each of the four stages.
        in_chans: input channels.
        num_classes: logits of :meth:`forward`; 0 returns the pooled last stage.
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth of the last block (linearly less before it).
        zero_init_last: zero every block's last norm scale so that each block starts as its
            shortcut (torchvision's ``zero_init_residual``; timm's default).
        norm_layer: norm after every conv (``"batchnorm"``, ``"groupnorm"``, a class).
        act_layer: non-linearity (``"relu"``, a class).
        pretrained: a local torchvision, timm or cvtasks ResNet checkpoint of the same depth.

    Raises:
        ValueError: ``layers`` is not four positive block counts, or a bad ``drop_path_rate``.
    """

    stem_weight = "conv1.weight"

    fuse_pairs = (("conv1", "bn1"),)  # the stem, for cvtasks.layers.fuse_batchnorm
    variant: str = "resnet"  # the registered name, set by the variant functions

    def extra_repr(self) -> str:
        return f"variant={self.variant}"

    def __init__(
        self,
        block: type[nn.Module],
        layers: Sequence[int],
        in_chans: int = 3,
        num_classes: int = 0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = False,
        norm_layer: NormLayer = "batchnorm",
        act_layer: str | type[nn.Module] = "relu",
        pretrained: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        counts_ok = all(isinstance(n, int) and n > 0 for n in layers)
        if len(layers) != len(STAGE_WIDTHS) or not counts_ok:
            raise ValueError(f"layers must be four block counts >= 1, got {layers!r}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        self.in_chans = in_chans

        self.conv1 = nn.Conv2d(in_chans, STEM_WIDTH, 7, stride=2, padding=3, bias=False)
        self.bn1 = make_norm(norm_layer, STEM_WIDTH)
        self.act1 = make_activation(act_layer)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.feature_info = [dict(num_chs=STEM_WIDTH, reduction=2, module="act1")]

        in_chs, reduction, index, total = STEM_WIDTH, 4, 0, sum(layers)
        for stage, (depth, width) in enumerate(zip(layers, STAGE_WIDTHS), start=1):
            stride = 1 if stage == 1 else 2  # layer1 follows the max-pool at full stage width
            reduction *= stride
            blocks = []
            for i in range(depth):
                rate = drop_path_rate * index / max(total - 1, 1)
                blocks.append(
                    block(
                        in_chs,
                        width,
                        stride=stride if i == 0 else 1,  # the first block adapts the shape
                        drop_path_rate=rate,
                        norm_layer=norm_layer,
                        act_layer=act_layer,
                    )
                )
                in_chs, index = blocks[-1].out_chs, index + 1
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
            self.feature_info.append(
                dict(num_chs=in_chs, reduction=reduction, module=f"layer{stage}")
            )
        self.num_features = in_chs
        self.init_head(num_classes, drop_rate)

        self._init_weights(zero_init_last)
        if pretrained:
            load_pretrained(self, pretrained)

    def _init_weights(self, zero_init_last: bool) -> None:
        # torchvision's and timm's init: He normal on fan-out for every conv, norms at (1, 0),
        # the classifier at nn.Linear's default.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_last:
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    module.zero_init_last()

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stem activation and the four stages: ``[B, 64, H/2, W/2]`` … ``[B, C, H/32, W/32]``.

        Sizes are ``ceil``-rounded per stride, e.g. 224 → 112, 56, 28, 14, 7.
        """
        x = self.act1(self.bn1(self.conv1(x)))
        features = [x]
        x = self.maxpool(x)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features


#: the block and the blocks per stage of each variant, as the module docstring lists them.
ARCHS: dict[str, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    "resnet18": (ResBasicBlock, (2, 2, 2, 2)),
    "resnet34": (ResBasicBlock, (3, 4, 6, 3)),
    "resnet50": (ResBottleneck, (3, 4, 6, 3)),
    "resnet101": (ResBottleneck, (3, 4, 23, 3)),
    "resnet152": (ResBottleneck, (3, 8, 36, 3)),
}


def _create_resnet(variant: str, **kwargs: Any) -> ResNet:
    """Build a :class:`ResNet` from a variant's row of ``ARCHS`` plus the user's keywords.

    A keyword repeating the variant's ``block`` or ``layers`` raises ``TypeError``: depth is what
    the name says.
    """
    block, layers = ARCHS[variant]
    model = ResNet(block=block, layers=layers, **kwargs)
    model.variant = variant
    return model


@BACKBONES.register("resnet18")
def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18: :class:`ResBasicBlock` x (2, 2, 2, 2), 11.7M parameters with 1000 classes."""
    return _create_resnet("resnet18", **kwargs)


@BACKBONES.register("resnet34")
def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34: :class:`ResBasicBlock` x (3, 4, 6, 3), 21.8M parameters with 1000 classes."""
    return _create_resnet("resnet34", **kwargs)


@BACKBONES.register("resnet50")
def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50: :class:`ResBottleneck` x (3, 4, 6, 3), 25.6M parameters with 1000 classes."""
    return _create_resnet("resnet50", **kwargs)


@BACKBONES.register("resnet101")
def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101: :class:`ResBottleneck` x (3, 4, 23, 3), 44.5M parameters with 1000 classes."""
    return _create_resnet("resnet101", **kwargs)


@BACKBONES.register("resnet152")
def resnet152(**kwargs: Any) -> ResNet:
    """ResNet-152: :class:`ResBottleneck` x (3, 8, 36, 3), 60.2M parameters with 1000 classes."""
    return _create_resnet("resnet152", **kwargs)
