"""EfficientNet-B0 to B7: one MBConv baseline scaled in width, depth and resolution together.

Seed 001 (§6.5, "EfficientNet Models") introduces EfficientNet as a
family whose depth, width and resolution are scaled up "in a balanced way" by one compound
scaling rule, from the lightest B0 to the heaviest B7, and plots
their accuracy against parameter count in Fig 6.15 (after Tan & Le, 2019). The
baseline and the coefficients below are those of that paper, in torchvision's reading of it,
so that parameter counts and checkpoints agree with torchvision's ``efficientnet_b*``.

B0 on a 224x224 input (every block an :class:`cvtasks.layers.MBConv`; SE squeezes to a quarter of
the block's input channels; ``blocks.N`` is torchvision's ``features.N+1``):

==========  ==========================  ======  ======  ========  ==========  =============
module      what                        kernel  stride  channels  blocks      output
==========  ==========================  ======  ======  ========  ==========  =============
stem        conv, BN, SiLU              3x3     2       32        1           32@112x112
blocks.0    MBConv1 (no expansion)      3x3     1       16        1           16@112x112
blocks.1    MBConv6                     3x3     2       24        2           24@56x56
blocks.2    MBConv6                     5x5     2       40        2           40@28x28
blocks.3    MBConv6                     3x3     2       80        3           80@14x14
blocks.4    MBConv6                     5x5     1       112       3           112@14x14
blocks.5    MBConv6                     5x5     2       192       4           192@7x7
blocks.6    MBConv6                     3x3     1       320       1           320@7x7
conv_head   1x1 conv, BN, SiLU          1x1     1       1280      1           1280@7x7
fc          pool, dropout, linear                                             num_classes
==========  ==========================  ======  ======  ========  ==========  =============

Compound scaling: variant ``b`` multiplies every channel count (stem, stages; the head is four
times the last stage) by ``width_mult`` and rounds it to a multiple of 8 never more than 10% down
(:func:`cvtasks.layers.make_divisible`), multiplies every stage's block count by ``depth_mult``
and rounds *up*, and is defined for a larger square input (``default_input_size``):

=======  =====  =====  ==========  =======  ====  ====  ======  ============  ======
variant  width  depth  resolution  dropout  stem  head  blocks  params (1k)   GFLOPs
=======  =====  =====  ==========  =======  ====  ====  ======  ============  ======
b0       1.0    1.0    224         0.2      32    1280  16       5,288,548    0.77
b1       1.0    1.1    240         0.2      32    1280  23       7,794,184    1.37
b2       1.1    1.2    260         0.3      32    1408  23       9,109,994    1.99
b3       1.2    1.4    300         0.3      40    1536  26      12,233,232    3.65
b4       1.4    1.8    380         0.4      48    1792  32      19,341,616    8.79
b5       1.6    2.2    456         0.4      48    2048  39      30,389,784   20.5
b6       1.8    2.6    528         0.5      56    2304  45      43,040,704   38.1
b7       2.0    3.1    600         0.5      64    2560  55      66,347,960   75.5
=======  =====  =====  ==========  =======  ====  ====  ======  ============  ======

(GFLOPs count a multiply-add as two, one image at the variant's resolution, from
``torch.utils.flop_counter``.) The resolutions are the paper's; torchvision's B2 weights were
evaluated at 288 rather than 260, which changes no weight. B5-B7 use BatchNorm ``eps=1e-3,
momentum=0.01`` as torchvision does (their weights were ported from TensorFlow); B0-B4 PyTorch's
defaults. Stochastic depth grows linearly over the blocks, block ``i`` of ``n`` dropping its
residual branch with probability ``drop_path_rate · i / n`` (0 for the first block).

Stages for ``forward_features`` are the last block at each reduction, as in timm's
``features_only``: ``blocks.0`` (16 ch, 2), ``blocks.1`` (24, 4), ``blocks.2`` (40, 8),
``blocks.4`` (112, 16) and ``blocks.6`` (320, 32), channels scaled with the width. The 1x1
``conv_head`` belongs to the classifier, not to a stage: it is a per-pixel widening (no new
receptive field) of the last stage to four times its channels, trained to feed the linear layer,
and handing 1280 instead of 320 channels to dense heads (segmentation, landmarks) would quadruple
their first layer for nothing seen anew. So ``num_features`` is 320 (B0), ``pre_logits`` and a
model with ``num_classes=0`` (which builds no ``conv_head``) give the pooled 320 channels, and
``classifier_modules = ("conv_head", "fc")``: a checkpoint's head conv and linear layer are
skipped when they do not fit the model, and start anew only then.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from cvtasks.backbones.base import Backbone
from cvtasks.backbones.common import init_torchvision_weights, run_stages
from cvtasks.backbones.input_size import input_size
from cvtasks.backbones.weights import StateDict, build_with_weights
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

#: B0's stages: (expand_ratio, kernel, stride, out_chs, blocks); stem 32 channels, stride 2.
B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
B0_STEM_CHS = 32
HEAD_EXPANSION = 4  # conv_head: 4 x the last stage's channels (1280 = 4 x 320 in B0)
FEATURE_STAGES = (0, 1, 2, 4, 6)  # the last stage at each reduction 2, 4, 8, 16, 32

#: (width_mult, depth_mult, resolution, dropout) per variant, as torchvision's efficientnet_b*.
VARIANTS: dict[str, tuple[float, float, int, float]] = {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2),
    "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4),
    "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5),
    "efficientnet_b7": (2.0, 3.1, 600, 0.5),
}
#: B5-B7 weights come from TensorFlow, whose BatchNorm defaults these are (torchvision keeps them).
TF_NORM = {"eps": 1e-3, "momentum": 0.01}
TF_NORM_VARIANTS = ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7")


def scale_width(chs: int, width_mult: float) -> int:
    """Channels of a scaled stage: ``chs · width_mult`` rounded to a multiple of 8."""
    return make_divisible(chs * width_mult, 8)


def scale_depth(blocks: int, depth_mult: float) -> int:
    """Blocks of a scaled stage: ``blocks · depth_mult`` rounded up (B1: 1.1 x 2 → 3)."""
    return math.ceil(blocks * depth_mult)


class EfficientNet(Backbone):
    """EfficientNet (see the module docstring for the stage table and the scaling).

    Args:
        width_mult: channel multiplier of every stage.
        depth_mult: block-count multiplier of every stage (rounded up).
        in_chans: input channels.
        num_classes: logits of the classifier; 0 builds neither ``conv_head`` nor ``fc``.
        drop_rate: dropout before the linear layer.
        drop_path_rate: stochastic depth rate; block ``i`` of ``n`` (counted from 0 over all
            stages) drops its residual branch with probability ``drop_path_rate · i / n``.
        input_size: the resolution the variant is defined for (``default_input_size``).
        norm_kwargs: BatchNorm keywords (``{"eps": 1e-3, "momentum": 0.01}`` for B5-B7).

    Raises:
        ValueError: bad ``num_classes``, ``drop_rate`` or ``drop_path_rate``.
    """

    classifier_modules = ("conv_head", "fc")
    stem_weight = "stem.conv.weight"
    variant_args = ("width_mult", "depth_mult", "input_size", "norm_kwargs")  # per variant

    def __init__(
        self,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        in_chans: int = 3,
        num_classes: int = 0,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.2,
        input_size: int = 224,
        norm_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_head_args(num_classes, drop_rate, dropout_name="drop_rate", minimum=0)
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.default_input_size = input_size
        opts = dict(norm_kwargs=norm_kwargs)

        stem_chs = scale_width(B0_STEM_CHS, width_mult)
        self.stem = ConvNormAct(in_chans, stem_chs, 3, stride=2, act_layer="silu", **opts)

        depths = [scale_depth(n, depth_mult) for *_, n in B0_STAGES]
        rates = [drop_path_rate * i / sum(depths) for i in range(sum(depths))]  # as torchvision
        in_chs, reduction, stages = stem_chs, 2, []
        self.feature_info = []
        for i, ((ratio, kernel, stride, out_chs, _), depth) in enumerate(zip(B0_STAGES, depths)):
            out_chs = scale_width(out_chs, width_mult)
            blocks = []
            for j in range(depth):  # the first block of a stage strides and changes width
                blocks.append(
                    MBConv(
                        in_chs,
                        out_chs,
                        kernel,
                        stride=stride if j == 0 else 1,
                        expand_ratio=ratio,
                        se_ratio=0.25,
                        drop_path=rates.pop(0),
                        **opts,
                    )
                )
                in_chs = out_chs
            stages.append(nn.Sequential(*blocks))
            reduction *= stride
            if i in FEATURE_STAGES:
                info = dict(num_chs=out_chs, reduction=reduction, module=f"blocks.{i}")
                self.feature_info.append(info)
        self.blocks = nn.Sequential(*stages)
        self.num_features = in_chs
        # The classifier: a 1x1 conv widening the last stage (not a stage, see the module
        # docstring), then pool → dropout → linear; neither exists without classes.
        head_chs = HEAD_EXPANSION * in_chs
        self.head_chs = head_chs
        self.conv_head = (
            ConvNormAct(in_chs, head_chs, 1, act_layer="silu", **opts)
            if num_classes
            else nn.Identity()
        )
        self.fc = LinearHead(head_chs, num_classes, drop_rate) if num_classes else nn.Identity()

        # torchvision's initialisation, so that training from scratch matches its recipe.
        init_torchvision_weights(self, _uniform_by_out_features)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The last block's map at each reduction 2, 4, 8, 16, 32 (16@112 ... 320@7 for B0)."""
        return run_stages(self.blocks, self.stem(x), keep=FEATURE_STAGES)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits through ``conv_head`` and ``fc``, or the pooled last stage ``[B, num_features]``
        when ``pre_logits`` or ``num_classes == 0`` (the wider ``conv_head`` output is the
        classifier's own)."""
        if pre_logits or not self.num_classes:
            return pool_flat(x)
        return self.fc(self.conv_head(x))


def _uniform_by_out_features(weight: torch.Tensor) -> torch.Tensor:
    """torchvision's EfficientNet linear init: uniform in ``±1/sqrt(out_features)``."""
    bound = 1.0 / math.sqrt(weight.shape[0])
    return nn.init.uniform_(weight, -bound, bound)


def _efficientnet_checkpoint_filter(state: StateDict, model: nn.Module) -> StateDict:
    """Map torchvision's ``EfficientNet`` keys onto ours; our own layout passes through.

    torchvision holds the stem, the seven stages and the head conv in ``features.0`` to
    ``features.8`` (each conv an ``nn.Sequential`` of conv ``0`` and norm ``1``) and the linear
    layer in ``classifier.1``. A stem weight made for other input channels is left to
    :func:`~cvtasks.backbones.weights.load_pretrained`, which adapts it to the model's input
    channels as timm does, with a warning.
    """
    if "features.0.0.weight" in state:
        last = len(model.blocks) + 1
        renamed: StateDict = {}
        for key, value in state.items():
            top, _, rest = key.partition(".")
            if top == "classifier" and rest.startswith("1."):
                renamed["fc." + rest[2:]] = value
                continue
            index, _, rest = rest.partition(".")
            if top != "features" or not index.isdigit():
                renamed[key] = value  # unknown: let load_pretrained report it
                continue
            i = int(index)
            prefix = "stem" if i == 0 else "conv_head" if i == last else f"blocks.{i - 1}"
            renamed[f"{prefix}.{rest}"] = value
        state = remap_conv_norm_act_keys(renamed, model)
    return state


def _create_efficientnet(variant: str, **kwargs: Any) -> EfficientNet:
    """Build a variant from its row of ``VARIANTS``; ``pretrained`` may be a torchvision file."""
    width, depth, resolution, dropout = VARIANTS[variant]
    kwargs.setdefault("drop_rate", dropout)
    if variant in TF_NORM_VARIANTS:
        kwargs.setdefault("norm_kwargs", dict(TF_NORM))
    return build_with_weights(
        EfficientNet,
        variant,
        key_map=_efficientnet_checkpoint_filter,
        width_mult=width,
        depth_mult=depth,
        input_size=resolution,
        **kwargs,
    )


@BACKBONES.register("efficientnet_b0")
@input_size(VARIANTS["efficientnet_b0"][2])
def efficientnet_b0(
    drop_rate: float = VARIANTS["efficientnet_b0"][3], **kwargs: Any
) -> EfficientNet:
    """EfficientNet-B0, the baseline: width 1.0, depth 1.0, 224x224 (seed 001 §6.5, Fig 6.15)."""
    return _create_efficientnet("efficientnet_b0", drop_rate=drop_rate, **kwargs)


@BACKBONES.register("efficientnet_b1")
@input_size(VARIANTS["efficientnet_b1"][2])
def efficientnet_b1(
    drop_rate: float = VARIANTS["efficientnet_b1"][3], **kwargs: Any
) -> EfficientNet:
    """EfficientNet-B1: width 1.0, depth 1.1, 240x240 (seed 001 §6.5, Fig 6.15)."""
    return _create_efficientnet("efficientnet_b1", drop_rate=drop_rate, **kwargs)


@BACKBONES.register("efficientnet_b2")
@input_size(VARIANTS["efficientnet_b2"][2])
def efficientnet_b2(
    drop_rate: float = VARIANTS["efficientnet_b2"][3], **kwargs: Any
) -> EfficientNet:
    """EfficientNet-B2: width 1.1, depth 1.2, 260x260 (seed 001 §6.5, Fig 6.15)."""
    return _create_efficientnet("efficientnet_b2", drop_rate=drop_rate, **kwargs)


@BACKBONES.register("efficientnet_b3")
@input_size(VARIANTS["efficientnet_b3"][2])
def efficientnet_b3(
    drop_rate: float = VARIANTS["efficientnet_b3"][3], **kwargs: Any
) -> EfficientNet:
    """EfficientNet-B3: width 1.2, depth 1.4, 300x300 (seed 001 §6.5, Fig 6.15)."""
    return _create_efficientnet("efficientnet_b3", drop_rate=drop_rate, **kwargs)


@BACKBONES.register("efficientnet_b4")
@input_size(VARIANTS["efficientnet_b4"][2])
def efficientnet_b4(
    drop_rate: float = VARIANTS["efficientnet_b4"][3], **kwargs: Any
) -> EfficientNet:
    """EfficientNet-B4: width 1.4, depth 1.8, 380x380 (seed 001 §6.5, Fig 6.15)."""
    return _create_efficientnet("efficientnet_b4", drop_rate=drop_rate, **kwargs)


@BACKBONES.register("efficientnet_b5")
@input_size(VARIANTS["efficientnet_b5"][2])
def efficientnet_b5(
    drop_rate: float = VARIANTS["efficientnet_b5"][3], **kwargs: Any
) -> EfficientNet:
    """EfficientNet-B5: width 1.6, depth 2.2, 456x456, BN eps 1e-3 (seed 001 §6.5, Fig 6.15)."""
    return _create_efficientnet("efficientnet_b5", drop_rate=drop_rate, **kwargs)


@BACKBONES.register("efficientnet_b6")
@input_size(VARIANTS["efficientnet_b6"][2])
def efficientnet_b6(
    drop_rate: float = VARIANTS["efficientnet_b6"][3], **kwargs: Any
) -> EfficientNet:
    """EfficientNet-B6: width 1.8, depth 2.6, 528x528, BN eps 1e-3 (seed 001 §6.5, Fig 6.15)."""
    return _create_efficientnet("efficientnet_b6", drop_rate=drop_rate, **kwargs)


@BACKBONES.register("efficientnet_b7")
@input_size(VARIANTS["efficientnet_b7"][2])
def efficientnet_b7(
    drop_rate: float = VARIANTS["efficientnet_b7"][3], **kwargs: Any
) -> EfficientNet:
    """EfficientNet-B7, the largest: width 2.0, depth 3.1, 600x600 (seed 001 §6.5, Fig 6.15)."""
    return _create_efficientnet("efficientnet_b7", drop_rate=drop_rate, **kwargs)
