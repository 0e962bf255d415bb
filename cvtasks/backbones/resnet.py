"""ResNet-10/18/34/50/101/152: residual stages behind a strided stem.

A residual block adds its input to the output of a few convolutions, "typically before the
application of an activation function" (seed 001 §6.5, Fig 6.14), so a block whose
convolutions output about zero is about the identity, the function the seed ("Residual Connections")
hypothesises deep layers should stay near. When a block changes the channel count
or the resolution, "we use one by one convolutions" on the shortcut.
The blocks are :class:`cvtasks.layers.BasicBlock` (two 3x3) and :class:`cvtasks.layers.Bottleneck`
(1x1 → 3x3 → 1x1, 4x expansion, stride on the 3x3 as in torchvision's ResNet v1.5), each
dropping its residual branch with its own ``drop_path`` probability.

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
``fc``                average pool, linear    classes     classes
====================  ======================  ==========  ===========  =========

Blocks per stage: 10 (1, 1, 1, 1), 18 (2, 2, 2, 2), 34 (3, 4, 6, 3) with :class:`BasicBlock`;
50 (3, 4, 6, 3), 101 (3, 4, 23, 3), 152 (3, 8, 36, 3) with :class:`Bottleneck`.
``forward_features`` returns the stem activation (``act1``, before the max-pool) and the four
stages, as timm's ``feature_info`` does, so decoders get every scale from 1/2 to 1/32.

Module names are torchvision's, which timm's ResNet shares, so both libraries' checkpoints load
key for key; when ``in_chans`` differs from the checkpoint's, the stem (``stem_weight``) is
adapted as timm adapts it (summed for one channel, repeated and rescaled for more).
``drop_path_rate`` drops residual branches per sample (stochastic depth), rising linearly from 0
at the first block to the rate at the last, as in timm.

Narrower and shallower networks for small images take timm's knobs, with the same meaning and
the same state-dict keys: ``channels`` (the four stage widths), ``stem_width``, ``layers`` (blocks
per stage), ``stem_type="deep"``/``"deep_tiered"`` (three 3x3 convs instead of the 7x7, ``3/4 ·
stem_width``, ``stem_width``, ``2 · stem_width`` channels for the tiered one), ``avg_down``
(average-pooling projection shortcuts) and ``out_indices`` (which of the five maps are features;
stages past the deepest one are not built). ``conf/backbone/resnet10_tiny.yaml`` is timm's
``resnet10t`` at widths 16-128 this way, ``conf/backbone/resnet18_narrow.yaml`` a ResNet-18 at
widths 32-256 up to 1/16.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cvtasks.backbones.base import Backbone
from cvtasks.backbones.weights import build_with_weights
from cvtasks.layers import BasicBlock, Bottleneck, make_activation, make_norm
from cvtasks.layers.norm import NormLayer
from cvtasks.registry import BACKBONES

STAGE_WIDTHS = (64, 128, 256, 512)  # conv widths per stage; a Bottleneck outputs 4x as many
STEM_WIDTH = 64
STEM_TYPES = ("", "deep", "deep_tiered")
ALL_FEATURES = (0, 1, 2, 3, 4)  # act1 (the stem) and layer1-layer4


def _stem(
    in_chans: int, stem_width: int, stem_type: str, norm_layer: NormLayer, act_layer: Any
) -> tuple[nn.Module, int]:
    """``conv1`` and its output channels: a 7x7/2 conv, or timm's deep stem of three 3x3 convs.

    The deep stem's first two convs carry their norm and activation inside ``conv1`` (timm's
    layout: ``conv1.0``, ``conv1.1``, ``conv1.3``, ``conv1.4``, ``conv1.6``); the last one's norm is
    ``bn1``, as for the 7x7 stem.
    """
    if not stem_type:
        return nn.Conv2d(in_chans, stem_width, 7, stride=2, padding=3, bias=False), stem_width
    mid = (3 * (stem_width // 4), stem_width) if stem_type == "deep_tiered" else (stem_width,) * 2
    out = 2 * stem_width
    return nn.Sequential(
        nn.Conv2d(in_chans, mid[0], 3, stride=2, padding=1, bias=False),
        make_norm(norm_layer, mid[0]),
        make_activation(act_layer),
        nn.Conv2d(mid[0], mid[1], 3, padding=1, bias=False),
        make_norm(norm_layer, mid[1]),
        make_activation(act_layer),
        nn.Conv2d(mid[1], out, 3, padding=1, bias=False),
    ), out


def _check_args(
    layers: Sequence[int],
    channels: Sequence[int],
    stem_type: str,
    out_indices: Sequence[int],
    drop_path_rate: float,
) -> None:
    counts_ok = all(isinstance(n, int) and n > 0 for n in layers)
    if len(layers) != len(STAGE_WIDTHS) or not counts_ok:
        raise ValueError(f"layers must be four block counts >= 1, got {list(layers)!r}")
    widths_ok = all(isinstance(c, int) and c > 0 for c in channels)
    if len(channels) != len(STAGE_WIDTHS) or not widths_ok:
        raise ValueError(f"channels must be four stage widths >= 1, got {list(channels)!r}")
    if stem_type not in STEM_TYPES:
        raise ValueError(f"stem_type must be one of {STEM_TYPES}, got {stem_type!r}")
    if not out_indices or any(i not in ALL_FEATURES for i in out_indices):
        raise ValueError(
            f"out_indices must name feature maps among {list(ALL_FEATURES)} (0: the stem, 1-4: "
            f"layer1-layer4), got {list(out_indices)!r}"
        )
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}")


class ResNet(Backbone):
    """A ResNet (see the module docstring for the stage table and the seed citations).

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck` (any block class taking
            ``(in_chs, width, stride=, drop_path=, avg_down=, norm_layer=, act_layer=)`` and
            exposing ``out_chs``).
        layers: blocks in each of the four stages.
        in_chans: input channels.
        num_classes: logits of :meth:`forward`; 0 returns the pooled last stage.
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth of the last block (linearly less before it).
        zero_init_last: zero every block's last norm scale so that each block starts as its
            shortcut (torchvision's ``zero_init_residual``; timm's default).
        norm_layer: norm after every conv (``"batchnorm"``, ``"groupnorm"``, a class).
        act_layer: non-linearity (``"relu"``, a class).
        channels: conv widths of the four stages (a Bottleneck outputs 4x as many).
        stem_width: channels of the 7x7 stem; half the output of a deep stem.
        stem_type: ``""`` (7x7/2 conv), ``"deep"`` or ``"deep_tiered"`` (three 3x3 convs).
        avg_down: projection shortcuts average-pool rather than stride (timm's ``avg_down``).
        out_indices: which maps :meth:`forward_features` returns (0: the stem activation,
            1-4: the stages); stages past the deepest one are not built.

    Raises:
        ValueError: ``layers`` or ``channels`` are not four positive ints, an unknown
            ``stem_type``, bad ``out_indices`` or a bad ``drop_path_rate``.
    """

    fuse_pairs = (("conv1", "bn1"),)  # the 7x7 stem, for cvtasks.layers.fuse_batchnorm

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
        channels: Sequence[int] = STAGE_WIDTHS,
        stem_width: int = STEM_WIDTH,
        stem_type: str = "",
        avg_down: bool = False,
        out_indices: Sequence[int] = ALL_FEATURES,
    ) -> None:
        super().__init__()
        layers, channels = [int(n) for n in layers], [int(c) for c in channels]  # ListConfig
        out_indices = tuple(int(i) for i in out_indices)
        _check_args(layers, channels, stem_type, out_indices, drop_path_rate)
        self.in_chans = in_chans
        self.out_indices = out_indices
        self.stem_weight = "conv1.0.weight" if stem_type else "conv1.weight"

        self.conv1, in_chs = _stem(in_chans, stem_width, stem_type, norm_layer, act_layer)
        self.bn1 = make_norm(norm_layer, in_chs)
        self.act1 = make_activation(act_layer)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        infos = [dict(num_chs=in_chs, reduction=2, module="act1")]

        built = max(out_indices)  # stages past the deepest feature are not built
        reduction, index, total = 4, 0, sum(layers[:built])
        self.stages: list[str] = []
        for stage, (depth, width) in enumerate(zip(layers[:built], channels), start=1):
            stride = 1 if stage == 1 else 2  # layer1 follows the max-pool at full stage width
            reduction *= stride
            blocks = []
            for i in range(depth):
                blocks.append(
                    block(
                        in_chs,
                        width,
                        stride=stride if i == 0 else 1,  # the first block adapts the shape
                        drop_path=drop_path_rate * index / max(total - 1, 1),
                        avg_down=avg_down,
                        norm_layer=norm_layer,
                        act_layer=act_layer,
                    )
                )
                in_chs, index = blocks[-1].out_chs, index + 1
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
            self.stages.append(f"layer{stage}")
            infos.append(dict(num_chs=in_chs, reduction=reduction, module=f"layer{stage}"))
        self.feature_info = [infos[i] for i in sorted(out_indices)]
        self.num_features = in_chs
        self.init_head(num_classes, drop_rate)
        self._init_weights(zero_init_last)

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
        """The maps named by ``out_indices``: by default the stem activation and the four stages,
        ``[B, 64, H/2, W/2]`` … ``[B, C, H/32, W/32]``.

        Sizes are ``ceil``-rounded per stride, e.g. 224 → 112, 56, 28, 14, 7.
        """
        x = self.act1(self.bn1(self.conv1(x)))
        features = [x] if 0 in self.out_indices else []
        x = self.maxpool(x)
        for index, name in enumerate(self.stages, start=1):
            x = getattr(self, name)(x)
            if index in self.out_indices:
                features.append(x)
        return features


#: the block and the blocks per stage of each variant, as the module docstring lists them.
ARCHS: dict[str, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    "resnet10": (BasicBlock, (1, 1, 1, 1)),
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
    "resnet152": (Bottleneck, (3, 8, 36, 3)),
}


def _create_resnet(variant: str, **kwargs: Any) -> ResNet:
    """Build a :class:`ResNet` from a variant's row of ``ARCHS`` plus the user's keywords.

    A keyword repeating the variant's ``block`` or ``layers`` raises ``TypeError``: depth is what
    the name says. torchvision, timm and cvtasks checkpoints share the layout, so ``pretrained``
    needs no key map.
    """
    block, layers = ARCHS[variant]
    return build_with_weights(ResNet, variant, block=block, layers=layers, **kwargs)


@BACKBONES.register("resnet10")
def resnet10(**kwargs: Any) -> ResNet:
    """ResNet-10: :class:`BasicBlock` x (1, 1, 1, 1), the depth of timm's ``resnet10t``."""
    return _create_resnet("resnet10", **kwargs)


@BACKBONES.register("resnet18")
def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18: :class:`BasicBlock` x (2, 2, 2, 2), 11.7M parameters with 1000 classes."""
    return _create_resnet("resnet18", **kwargs)


@BACKBONES.register("resnet34")
def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34: :class:`BasicBlock` x (3, 4, 6, 3), 21.8M parameters with 1000 classes."""
    return _create_resnet("resnet34", **kwargs)


@BACKBONES.register("resnet50")
def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50: :class:`Bottleneck` x (3, 4, 6, 3), 25.6M parameters with 1000 classes."""
    return _create_resnet("resnet50", **kwargs)


@BACKBONES.register("resnet101")
def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101: :class:`Bottleneck` x (3, 4, 23, 3), 44.5M parameters with 1000 classes."""
    return _create_resnet("resnet101", **kwargs)


@BACKBONES.register("resnet152")
def resnet152(**kwargs: Any) -> ResNet:
    """ResNet-152: :class:`Bottleneck` x (3, 8, 36, 3), 60.2M parameters with 1000 classes."""
    return _create_resnet("resnet152", **kwargs)
