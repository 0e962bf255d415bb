"""MobileNetV2: inverted residuals with linear bottlenecks (Sandler et al., CVPR 2018).

Each block widens its input ``t`` times with a 1x1 convolution, filters every channel on its own
with a 3x3 depthwise convolution (the depthwise-separable factorisation: a kxk filter per channel,
then a 1x1 mix, instead of one dense kxk over all channels), and projects back down with a 1x1
convolution that has *no* activation: a ReLU on the narrow bottleneck would destroy information
there (the paper's "linear bottleneck", §3.2). The shortcut joins the narrow ends, the opposite
of a ResNet bottleneck, hence "inverted residual" (§3.3). Activations are ReLU6, ``min(max(x, 0),
6)``, robust in low-precision arithmetic (§3.1).

The network is the paper's Table 2; every block is a :class:`cvtasks.layers.MBConv` without
squeeze-and-excitation and with ReLU6 (the block EfficientNet later built on), every other
convolution a :class:`cvtasks.layers.ConvNormAct`:

==========  ==========================  ======  ======  ========  ==  =============
module      what                        kernel  stride  channels  n   output (224)
==========  ==========================  ======  ======  ========  ==  =============
stem        conv, BN, ReLU6             3x3     2       32        1   32@112x112
blocks.0    bottleneck, t = 1           3x3     1       16        1   16@112x112
blocks.1    bottleneck, t = 6           3x3     2       24        2   24@56x56
blocks.2    bottleneck, t = 6           3x3     2       32        3   32@28x28
blocks.3    bottleneck, t = 6           3x3     2       64        4   64@14x14
blocks.4    bottleneck, t = 6           3x3     1       96        3   96@14x14
blocks.5    bottleneck, t = 6           3x3     2       160       3   160@7x7
blocks.6    bottleneck, t = 6           3x3     1       320       1   320@7x7
conv_head   1x1 conv, BN, ReLU6         1x1     1       1280      1   1280@7x7
fc          pool, dropout 0.2, linear                                 num_classes
==========  ==========================  ======  ======  ========  ==  =============

The first block of a stage has the stage's stride; the others stride 1 and keep the shortcut.
The width multiplier (§3.4, "width_mult") scales every channel count, rounded to a multiple of 8
never more than 10% down (:func:`cvtasks.layers.make_divisible`), except the 1280-channel head,
which is only ever widened (``1280 · max(1, width_mult)``), as in the paper and torchvision.
Since every stage width is then a multiple of 8, MBConv's expanded width (``in · t`` rounded to
8) equals torchvision's ``round(in · t)``: 3,504,872 parameters with 1000 classes, as theirs.

Stages for ``forward_features`` are the last block at each reduction, as timm's
``features_only`` gives: 16@2, 24@4, 32@8, 96@16 and 320@32. As in cvtasks' EfficientNet, the
1x1 ``conv_head`` is part of the classifier (a per-pixel widening trained for the linear layer),
so ``num_features`` is 320, a model with ``num_classes=0`` builds no ``conv_head``, and a
checkpoint's ``conv_head`` and ``fc`` are skipped when they do not fit.

torchvision's ``mobilenet_v2`` checkpoints load through :func:`torchvision_key_map`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn

from cvtasks.backbones import (
    Backbone,
    StateDict,
    build_with_weights,
    init_torchvision_weights,
    run_stages,
)
from cvtasks.backbones.input_size import input_size
from cvtasks.layers import (
    ConvNormAct,
    LinearHead,
    MBConv,
    check_head_args,
    make_divisible,
    pool_flat,
    remap_conv_norm_act_keys,
)
from cvtasks.registry import BACKBONES

#: the paper's Table 2: (expansion t, output channels c, repeats n, first stride s) per stage.
STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHS = 32
HEAD_CHS = 1280
FEATURE_STAGES = (0, 1, 2, 4, 6)  # the last stage at each reduction 2, 4, 8, 16, 32
ACT = "relu6"


class MobileNetV2(Backbone):
    """MobileNetV2 (see the module docstring for the table and the paper's sections).

    Args:
        width_mult: channel multiplier of the stem and every stage (0.35 ... 1.4 in the paper).
        in_chans: input channels.
        num_classes: logits of the classifier; 0 builds neither ``conv_head`` nor ``fc``.
        drop_rate: dropout before the linear layer (0.2, as torchvision).
        drop_path_rate: stochastic depth; block ``i`` of ``n`` (counted from 0 over all stages)
            drops its residual branch with probability ``drop_path_rate · i / n``, as cvtasks'
            EfficientNet. Blocks without a shortcut (a stage's first) drop nothing. 0 (default,
            as torchvision) builds the plain network.

    Raises:
        ValueError: a ``width_mult`` that is not positive, a bad ``num_classes``, ``drop_rate``
            or ``drop_path_rate``.
    """

    classifier_modules = ("conv_head", "fc")  # skipped from a checkpoint when they do not fit
    stem_weight = "stem.conv.weight"  # adapted as timm does when in_chans differs

    def __init__(
        self,
        width_mult: float = 1.0,
        in_chans: int = 3,
        num_classes: int = 0,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        check_head_args(num_classes, drop_rate, dropout_name="drop_rate", minimum=0)
        if not width_mult > 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult!r}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        self.in_chans, self.width_mult = in_chans, width_mult
        self.num_classes, self.drop_rate = num_classes, drop_rate

        in_chs = make_divisible(STEM_CHS * width_mult, 8)
        self.stem = ConvNormAct(in_chans, in_chs, 3, stride=2, act_layer=ACT)
        stages, reduction = [], 2
        self.feature_info = []
        total = sum(n for _, _, n, _ in STAGES)
        rates = [drop_path_rate * i / total for i in range(total)]
        for i, (t, c, n, s) in enumerate(STAGES):
            out_chs = make_divisible(c * width_mult, 8)
            blocks = []
            for j in range(n):
                stride = s if j == 0 else 1
                block = MBConv(
                    in_chs,
                    out_chs,
                    3,
                    stride,
                    t,
                    se_ratio=None,
                    act_layer=ACT,
                    drop_path=rates.pop(0),
                )
                blocks.append(block)
                in_chs = out_chs
            stages.append(nn.Sequential(*blocks))
            reduction *= s
            if i in FEATURE_STAGES:
                self.feature_info.append(
                    dict(num_chs=out_chs, reduction=reduction, module=f"blocks.{i}")
                )
        self.blocks = nn.Sequential(*stages)
        self.num_features = in_chs
        # The classifier: a 1x1 conv widening the last stage, then pool → dropout → linear.
        head_chs = make_divisible(HEAD_CHS * max(1.0, width_mult), 8)  # only ever widened
        self.head_chs = head_chs
        self.conv_head = (
            ConvNormAct(in_chs, head_chs, 1, act_layer=ACT) if num_classes else nn.Identity()
        )
        self.fc = LinearHead(head_chs, num_classes, drop_rate) if num_classes else nn.Identity()

        # torchvision's MobileNetV2 initialisation, so training from scratch follows its recipe.
        init_torchvision_weights(self, partial(nn.init.normal_, mean=0.0, std=0.01))

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The last block's map at each reduction: 16@2, 24@4, 32@8, 96@16, 320@32."""
        return run_stages(self.blocks, self.stem(x), keep=FEATURE_STAGES)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits through ``conv_head`` and ``fc``, or the pooled last stage ``[B, num_features]``
        when ``pre_logits`` or ``num_classes == 0``."""
        if pre_logits or not self.num_classes:
            return pool_flat(x)
        return self.fc(self.conv_head(x))


def torchvision_key_map(state: StateDict, model: nn.Module) -> StateDict:
    """Map torchvision's ``MobileNetV2`` keys onto :class:`MobileNetV2`; ours pass through.

    torchvision keeps the stem, the 17 blocks and the head conv in one flat ``features`` list
    (``features.0``, ``features.1`` ... ``features.17``, ``features.18``), each block's layers in
    ``conv``: the expansion and depthwise ``Conv2dNormActivation`` (``0``/``1`` inside), then the
    projection as a bare ``Conv2d`` and ``BatchNorm2d``. We keep the seven stages
    (``blocks.<stage>.<block>``) and one ``ConvNormAct`` per convolution (``conv``/``bn``), so
    the projection pair becomes the last ``ConvNormAct`` of ``block``. The linear layer is
    ``classifier.1`` there and ``fc`` here.
    """
    if "features.0.0.weight" not in state:
        return state
    flat = [f"blocks.{i}.{j}" for i, stage in enumerate(model.blocks) for j in range(len(stage))]
    renamed: StateDict = {}
    for key, value in state.items():
        top, _, rest = key.partition(".")
        index, _, rest = rest.partition(".")
        if top == "classifier" and index == "1":
            renamed[f"fc.{rest}"] = value
        elif top != "features" or not index.isdigit():
            renamed[key] = value  # unknown: load_pretrained reports it
        elif int(index) == 0:
            renamed[f"stem.{rest}"] = value
        elif int(index) > len(flat):
            renamed[f"conv_head.{rest}"] = value
        else:
            renamed[_block_key(flat[int(index) - 1], rest, model)] = value
    return remap_conv_norm_act_keys(renamed, model)


def _block_key(path: str, rest: str, model: nn.Module) -> str:
    """One key inside a torchvision ``InvertedResidual`` (``conv.<i>.<...>``) in our layout."""
    layers, _, leaf = rest.partition(".")  # "conv", "<i>.<...>"
    if layers != "conv":
        return f"{path}.{rest}"
    index, _, leaf = leaf.partition(".")
    project = len(model.get_submodule(f"{path}.block")) - 1  # our last ConvNormAct
    if int(index) == project:  # torchvision's bare projection Conv2d
        return f"{path}.block.{project}.conv.{leaf}"
    if int(index) == project + 1:  # ... and its BatchNorm2d
        return f"{path}.block.{project}.bn.{leaf}"
    return f"{path}.block.{index}.{leaf}"  # a Conv2dNormActivation: remapped to conv/bn after


@BACKBONES.register("mobilenet_v2")
@input_size(224)
def mobilenet_v2(**kwargs: Any) -> MobileNetV2:
    """MobileNetV2: inverted residuals, linear bottlenecks, ReLU6; 3.5M params (1000 classes).

    ``pretrained`` is a local weights file in cvtasks' layout or torchvision's ``mobilenet_v2``
    layout (``features.N...``, ``classifier.1``).
    """
    return build_with_weights(MobileNetV2, "mobilenet_v2", key_map=torchvision_key_map, **kwargs)
