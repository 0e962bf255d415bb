"""VGG-11/13/16/19, plain and with BatchNorm: 3x3 convolutions and 2x2 max-pools, then three FCs.

Every convolution is 3x3 with stride 1 and one zero on each side, followed by a ReLU; seed 001
(§6.4, "Fully Connected Layers") gives the padding as the total ``(p_h, p_v) = (2, 2)`` per axis of
its output-size formula (6.17), so "the input height and width dimensions are identical to the
output height and width dimensions". "All the pooling layers are max-pooling using 2x2 windows" of
stride 2 without padding, so each halves the map: 224, 112, 56, 28, 14, 7 (Table 6.1); the CS231n
notes of seed 003 ("VGGNet in detail") describe the same layers. The variants differ only in how
many convolutions each of the five stages stacks, written as data in ``CFGS`` (a width per
convolution, ``"M"`` for a max-pool, as in timm's ``vgg.py``):

==========  ==========  ==========  ==========  ==========  =============  =========
stage       VGG-11      VGG-13      VGG-16      VGG-19      output at 224  reduction
==========  ==========  ==========  ==========  ==========  =============  =========
stages.0    64          64 x2       64 x2       64 x2       64@112x112     2
stages.1    128         128 x2      128 x2      128 x2      128@56x56      4
stages.2    256 x2      256 x2      256 x3      256 x4      256@28x28      8
stages.3    512 x2      512 x2      512 x3      512 x4      512@14x14      16
stages.4    512 x2      512 x2      512 x3      512 x4      512@7x7        32
parameters  132,863,336 133,047,848 138,357,544 143,667,240 with 1000 classes
==========  ==========  ==========  ==========  ==========  =============  =========

VGG-19 is the seed's Table 6.1 (seed 001 §6.4): 16 convolutions of ``M_c·(M_c'·3·3 + 1)``
parameters each (its eq. 6.23), 1,792 for the first, then the flattened
``512·7·7 = 25,088`` vector into fully connected layers of 4,096, 4,096 and 1,000
outputs, 143,667,240 parameters in all. VGG-16 is seed 003's walk-through ("VGGNet in detail",
"TOTAL params: 138M", weights without biases). The ``_bn`` forms put a BatchNorm between every
convolution and its ReLU (torchvision's ``vgg*_bn``: the convolutions keep their bias), adding
two parameters per channel, 5,504 to 11,008 in all; :func:`cvtasks.layers.fuse_batchnorm` folds
them away for inference.

``forward_features`` returns the output of each stage, after its max-pool. The classifier is
torchvision's: an adaptive average pool to 7x7 (the size a 224 input gives; smaller maps are
repeated, larger ones averaged), then fc1 25,088 → 4,096, ReLU, dropout, fc2 4,096 → 4,096, ReLU,
dropout, fc 4,096 → ``num_classes``. Most parameters sit in fc1 (seed 003, "VGGNet in detail");
without classes (``num_classes=0``) the fully connected layers are not built and :meth:`forward`
returns the last stage averaged over positions, ``[B, 512]``. Module names differ from torchvision's
(``stages.<stage>.<conv>.conv`` for ``features.<index>``); :func:`_vgg_checkpoint_filter` renames
torchvision's keys, so its checkpoints load.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from cvtasks.backbones.base import Backbone
from cvtasks.backbones.common import init_torchvision_weights, run_stages
from cvtasks.backbones.weights import StateDict, build_with_weights, rename_modules
from cvtasks.layers import ConvNormAct, FCHead, GlobalPool, check_head_args
from cvtasks.layers.norm import NormLayer
from cvtasks.registry import BACKBONES

CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", *[512, 512, 512, "M"] * 2],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", *[512, 512, 512, 512, "M"] * 2],
}
POOL_SIZE = 7  # the classifier's adaptive pool: the last stage's size at 224x224
HIDDEN = 4096  # width of fc1 and fc2 (seed 001 Table 6.1, layers 22-23)
MIN_SIZE = 32  # five 2x2 max-pools: 32 leaves the last stage 1x1


def _split_stages(cfg: Sequence[int | str]) -> list[list[int]]:
    """The convolution widths of each stage: ``cfg`` cut after every ``"M"``."""
    stages: list[list[int]] = [[]]
    for item in cfg:
        if item == "M":
            stages.append([])
        else:
            stages[-1].append(int(item))
    if stages[-1] or not all(stages[:-1]):
        raise ValueError(f"cfg must be stages of convolution widths, each closed by 'M'; got {cfg}")
    return stages[:-1]


class VGG(Backbone):
    """VGG (see the module docstring for the layer table and the seed citations).

    Args:
        cfg: a width per 3x3 convolution and ``"M"`` after each stage, e.g. ``CFGS["vgg19"]``.
        norm_layer: ``None`` (plain VGG) or a norm between each convolution and its ReLU
            (``"batchnorm"`` for the ``_bn`` forms).
        in_chans: input channels.
        num_classes: logits of :meth:`forward`; 0 builds no fully connected layer.
        drop_rate: dropout after fc1 and after fc2 (torchvision: 0.5).
    """

    classifier_modules = ("head",)
    variant = "vgg"  # the registered name; build_with_weights sets it per variant
    stem_weight = "stages.0.0.conv.weight"
    variant_args = ("cfg", "norm_layer")  # set by each variant, not by configs

    def __init__(
        self,
        cfg: Sequence[int | str] = CFGS["vgg16"],
        norm_layer: NormLayer = None,
        in_chans: int = 3,
        num_classes: int = 0,
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__()
        check_head_args(num_classes, drop_rate, dropout_name="drop_rate", minimum=0)
        self.cfg = list(cfg)
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.drop_rate = drop_rate

        self.stages = nn.Sequential()
        self.feature_info = []
        in_chs = in_chans
        for s, widths in enumerate(_split_stages(cfg)):
            stage = nn.Sequential()
            for width in widths:
                # torchvision's VGG-BN convolutions keep their bias; fusing folds it in anyway.
                stage.append(
                    ConvNormAct(in_chs, width, 3, padding=1, bias=True, norm_layer=norm_layer)
                )
                in_chs = width
            stage.append(nn.MaxPool2d(kernel_size=2, stride=2))
            self.stages.add_module(str(s), stage)
            self.feature_info.append(
                dict(num_chs=in_chs, reduction=2 ** (s + 1), module=f"stages.{s}")
            )
        self.num_features = in_chs
        self.global_pool = GlobalPool("avg")  # the features path: pre_logits or no classes
        # torchvision's VGG drops out behind the ReLUs of fc1 and fc2.
        self.head = (
            FCHead(in_chs, num_classes, drop_rate, POOL_SIZE, HIDDEN, dropout_first=False)
            if num_classes
            else nn.Identity()
        )

        # torchvision's VGG init: He normal on fan-out for the convolutions (plain VGG-19 has no
        # norm to rescale 16 layers), norms at (1, 0), N(0, 0.01) for the linear layers.
        init_torchvision_weights(self, partial(nn.init.normal_, mean=0.0, std=0.01))

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five stage outputs, at 1/2 ... 1/32 of the input: 112, 56, 28, 14, 7 at 224.

        Raises:
            ValueError: an input smaller than 32x32, which the fifth max-pool cannot halve.
        """
        if min(x.shape[-2:]) < MIN_SIZE:
            raise ValueError(
                f"{self.variant} needs inputs of at least {MIN_SIZE}x{MIN_SIZE} (five 2x2 "
                f"max-pools), got {tuple(x.shape[-2:])}. Pad or resize the images to at least "
                f"{MIN_SIZE}x{MIN_SIZE}; the network is defined for 224x224."
            )
        return run_stages(self.stages, x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits from the three fully connected layers, or the last stage averaged over
        positions ``[B, num_features]`` when ``pre_logits`` or ``num_classes == 0``."""
        if pre_logits or not self.num_classes:
            return self.global_pool(x)
        return self.head(x)


# torchvision's classifier is one Sequential: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear.
_TORCHVISION_HEAD = {
    "classifier.0": "head.fc1",
    "classifier.3": "head.fc2",
    "classifier.6": "head.fc",
}


def _torchvision_names(cfg: Sequence[int | str], has_norm: bool) -> dict[str, str]:
    """torchvision module paths (``features.<index>``) → ours, walking ``cfg`` as it does.

    torchvision's ``features`` holds every layer: conv, (BatchNorm,) ReLU per width, a max-pool
    per ``"M"``.
    """
    names = dict(_TORCHVISION_HEAD)
    index = 0
    for s, widths in enumerate(_split_stages(cfg)):
        for j in range(len(widths)):
            names[f"features.{index}"] = f"stages.{s}.{j}.conv"
            if has_norm:
                names[f"features.{index + 1}"] = f"stages.{s}.{j}.bn"
            index += 3 if has_norm else 2
        index += 1  # the max-pool
    return names


def _vgg_checkpoint_filter(state: StateDict, model: nn.Module) -> StateDict:
    """Rename torchvision's keys onto ours; our own layout passes through.

    A first convolution made for another ``in_chans`` is left to
    :func:`~cvtasks.backbones.weights.load_pretrained`, which adapts it to the model's input
    channels as timm does, with a warning.
    """
    if "features.0.weight" in state:
        # The checkpoint says whether it has norms, so that a plain checkpoint for a _bn model
        # (or the reverse) fails on the norm keys rather than on shifted indices.
        names = _torchvision_names(model.cfg, has_norm="features.1.running_mean" in state)
        state = rename_modules(state, names)
    return state


def _create_vgg(variant: str, **kwargs: Any) -> VGG:
    """Build a :class:`VGG` from the depth in ``variant`` (``"vgg19_bn"`` → ``CFGS["vgg19"]``)."""
    depth, _, norm = variant.partition("_")
    norm_layer = "batchnorm" if norm == "bn" else None
    return build_with_weights(
        VGG,
        variant,
        key_map=_vgg_checkpoint_filter,
        cfg=CFGS[depth],
        norm_layer=norm_layer,
        **kwargs,
    )


@BACKBONES.register("vgg11")
def vgg11(**kwargs: Any) -> VGG:
    """VGG-11 (configuration A): 8 convolutions + 3 FC layers, 132.9M parameters."""
    return _create_vgg("vgg11", **kwargs)


@BACKBONES.register("vgg13")
def vgg13(**kwargs: Any) -> VGG:
    """VGG-13 (configuration B): 10 convolutions + 3 FC layers, 133.0M parameters."""
    return _create_vgg("vgg13", **kwargs)


@BACKBONES.register("vgg16")
def vgg16(**kwargs: Any) -> VGG:
    """VGG-16 (configuration D): seed 003's walk-through ("VGGNet in detail"), 138.4M parameters."""
    return _create_vgg("vgg16", **kwargs)


@BACKBONES.register("vgg19")
def vgg19(**kwargs: Any) -> VGG:
    """VGG-19 (configuration E): seed 001 Table 6.1, 143.7M parameters."""
    return _create_vgg("vgg19", **kwargs)


@BACKBONES.register("vgg11_bn")
def vgg11_bn(**kwargs: Any) -> VGG:
    """VGG-11 with BatchNorm after every convolution, 132.9M parameters."""
    return _create_vgg("vgg11_bn", **kwargs)


@BACKBONES.register("vgg13_bn")
def vgg13_bn(**kwargs: Any) -> VGG:
    """VGG-13 with BatchNorm after every convolution, 133.1M parameters."""
    return _create_vgg("vgg13_bn", **kwargs)


@BACKBONES.register("vgg16_bn")
def vgg16_bn(**kwargs: Any) -> VGG:
    """VGG-16 with BatchNorm after every convolution, 138.4M parameters."""
    return _create_vgg("vgg16_bn", **kwargs)


@BACKBONES.register("vgg19_bn")
def vgg19_bn(**kwargs: Any) -> VGG:
    """VGG-19 with BatchNorm after every convolution, 143.7M parameters."""
    return _create_vgg("vgg19_bn", **kwargs)
