"""AlexNet: five convolutions and three max-pools in front of a 4096-4096 fully connected head.

Two variants share one table of ``(out_chs, kernel, stride, padding)`` per convolution, each
followed by a ReLU; a 3x3 max-pool of stride 2 closes conv1, conv2 and conv5.

``alexnet`` is torchvision's one-GPU AlexNet, so its checkpoints load (61,100,840 parameters with
1000 classes), on a 224x224 input:

=======  =====================================  ===========  ====================================
layer    what                                   output       parameters
=======  =====================================  ===========  ====================================
conv1    64 x 11x11, stride 4, padding 2        64@55x55     64·(in_chans·121 + 1) = 23,296
pool1    3x3 max, stride 2                      64@27x27     0
conv2    192 x 5x5, padding 2                   192@27x27    192·(64·25 + 1) = 307,392
pool2    3x3 max, stride 2                      192@13x13    0
conv3    384 x 3x3, padding 1                   384@13x13    384·(192·9 + 1) = 663,936
conv4    256 x 3x3, padding 1                   256@13x13    256·(384·9 + 1) = 884,992
conv5    256 x 3x3, padding 1                   256@13x13    256·(256·9 + 1) = 590,080
pool3    3x3 max, stride 2                      256@6x6      0
fc1      dropout, 9,216 → 4,096, ReLU           4096         37,752,832
fc2      dropout, 4,096 → 4,096, ReLU           4096         16,781,312
fc       4,096 → num_classes                    num_classes  4,097,000 for 1000 classes
=======  =====================================  ===========  ====================================

``alexnet_seed`` is the network the seed describes: a 227x227x3 input and a first layer of ``K=96``
filters of ``F=11``, ``S=4``, ``P=0``, so ``(227 - 11)/4 + 1 = 55`` and a 55x55x96 output (seed 003,
CS231n notes, "Real-world example") with ``96·11·11·3 + 96 = 34,944`` parameters ("Parameter
Sharing"), then "two FC layers of size 4096 and finally the last FC layers with 1000 neurons"
("Converting FC layers to CONV layers"), about 60M parameters in all ("Case studies"). The seed
gives no widths for conv2-conv5; this variant takes those of Krizhevsky et al. (256, 384, 384, 256)
as one ungrouped tower, which makes 62,378,344 parameters. torchvision's network is the narrower
one-GPU version (64, 192, 384, 256, 256); it pads conv1 by 2 and so reaches the seed's 55x55 from
224x224 inputs, ``floor((224 + 4 - 11)/4) + 1 = 55`` (the seed guesses unmentioned zero-padding to
explain the paper's 224). ``alexnet_seed`` rounds pooled sizes up (``ceil_mode``), as Caffe does,
whose reference AlexNet takes the 227x227 crops: at 227 that changes nothing (55 → 27 → 13 → 6),
and it lets 64x64 inputs through (14 → 7 → 3 → 1) where rounding down would leave a 2x2 map for
pool3. Neither variant has local response normalisation: the seeds do not mention it and
torchvision dropped it. (The seed's FC→CONV example gives "an AlexNet" five 2x2 pools down
to 7x7x512; those are VGG's numbers ("VGGNet in detail"), built in :mod:`cvtasks.backbones.vgg`.)

``forward_features`` returns the three pooled stages, conv1+pool1, conv2+pool2 and
conv3-conv5+pool3, with reductions 8, 16 and 32 (the product of the strides so far). The
classifier is torchvision's: an adaptive average pool to 6x6 (the size a 224 input gives), then
the three fully connected layers above, with dropout ``drop_rate`` before fc1 and fc2. Without
classes (``num_classes=0``) the fully connected layers are not built and :meth:`forward` returns
the last stage averaged over positions, ``[B, 256]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cvtasks.backbones.base import Backbone
from cvtasks.backbones.common import run_stages
from cvtasks.backbones.input_size import input_size
from cvtasks.backbones.weights import StateDict, build_with_weights, rename_modules
from cvtasks.layers import ConvNormAct, FCHead, GlobalPool, check_head_args
from cvtasks.registry import BACKBONES

ConvSpec = tuple[int, int, int, int]  # out_chs, kernel, stride, padding

ARCHS: dict[str, dict[str, Any]] = {
    "alexnet": dict(
        convs=((64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1)),
        ceil_mode=False,
        input_size=224,
    ),
    "alexnet_seed": dict(
        convs=((96, 11, 4, 0), (256, 5, 1, 2), (384, 3, 1, 1), (384, 3, 1, 1), (256, 3, 1, 1)),
        ceil_mode=True,
        input_size=227,
    ),
}
STAGES = ((0,), (1,), (2, 3, 4))  # conv indices per stage; each stage ends in a 3x3/2 max-pool
POOL_SIZE = 6  # the classifier's adaptive pool: pool3's size at the defined input
HIDDEN = 4096  # width of fc1 and fc2 (seed 003, CS231n notes)


def _final_size(size: int, convs: Sequence[ConvSpec], ceil_mode: bool) -> int:
    """Side of pool3's output for a square input of ``size`` (0 or less: the input is too small)."""
    for stage in STAGES:
        for i in stage:
            _, kernel, stride, padding = convs[i]
            size = (size + 2 * padding - kernel) // stride + 1  # CS231n notes: (W-F+2P)/S+1
            if size < 1:
                return 0
        size = -(-(size - 3) // 2) + 1 if ceil_mode else (size - 3) // 2 + 1
        if size < 1:
            return 0
    return size


class AlexNet(Backbone):
    """AlexNet (see the module docstring for the layer table and the seed citations).

    Args:
        convs: ``(out_chs, kernel, stride, padding)`` of conv1-conv5.
        ceil_mode: round the max-pools' output sizes up instead of down.
        input_size: the square input the network is defined for (reported, not enforced).
        in_chans: input channels.
        num_classes: logits of :meth:`forward`; 0 builds no fully connected layer.
        drop_rate: dropout before fc1 and before fc2 (torchvision: 0.5).
    """

    classifier_modules = ("head",)
    variant = "alexnet"  # the registered name; build_with_weights sets it per variant
    stem_weight = "stages.0.conv1.conv.weight"
    variant_args = ("convs", "ceil_mode", "input_size")  # set by each variant, not by configs

    def __init__(
        self,
        convs: Sequence[ConvSpec] = ARCHS["alexnet"]["convs"],
        ceil_mode: bool = False,
        input_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 0,
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__()
        check_head_args(num_classes, drop_rate, dropout_name="drop_rate", minimum=0)
        if len(convs) != 5:
            raise ValueError(f"convs must give conv1-conv5, got {len(convs)} entries")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.default_input_size = input_size
        self.min_size = next(n for n in range(1, 1024) if _final_size(n, convs, ceil_mode) > 0)

        self.stages = nn.Sequential()
        self.feature_info = []
        in_chs, reduction = in_chans, 1
        for s, indices in enumerate(STAGES):
            stage = nn.Sequential()
            for i in indices:
                out_chs, kernel, stride, padding = convs[i]
                conv = ConvNormAct(
                    in_chs, out_chs, kernel, stride=stride, padding=padding, norm_layer=None
                )
                stage.add_module(f"conv{i + 1}", conv)
                in_chs, reduction = out_chs, reduction * stride
            stage.add_module("pool", nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=ceil_mode))
            reduction *= 2
            self.stages.add_module(str(s), stage)
            self.feature_info.append(
                dict(num_chs=in_chs, reduction=reduction, module=f"stages.{s}")
            )
        self.num_features = in_chs
        self.global_pool = GlobalPool("avg")  # the features path: pre_logits or no classes
        # torchvision's AlexNet drops out in front of fc1 and fc2.
        self.head = (
            FCHead(in_chs, num_classes, drop_rate, POOL_SIZE, HIDDEN, dropout_first=True)
            if num_classes
            else nn.Identity()
        )
        # Weights keep PyTorch's default initialisation, as torchvision's AlexNet does.

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The pool1, pool2 and pool3 maps, shallow to deep.

        For ``alexnet`` at 224x224: ``[B, 64, 27, 27]``, ``[B, 192, 13, 13]``, ``[B, 256, 6, 6]``.

        Raises:
            ValueError: an input too small to leave pool3 a window.
        """
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"{self.variant} needs inputs of at least {self.min_size}x{self.min_size} (three "
                f"3x3/2 max-pools after a stride-4 conv1), got {tuple(x.shape[-2:])}. Resize the "
                f"images to {self.default_input_size}x{self.default_input_size}, the size the "
                "network is defined for."
            )
        return run_stages(self.stages, x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits from the three fully connected layers, or the last stage averaged over
        positions ``[B, num_features]`` when ``pre_logits`` or ``num_classes == 0``."""
        if pre_logits or not self.num_classes:
            return self.global_pool(x)
        return self.head(x)


# torchvision's AlexNet: ``features`` and ``classifier`` are Sequentials of every layer, ReLUs,
# pools and dropouts included, so only the indices with weights appear here.
_TORCHVISION_NAMES = {
    "features.0": "stages.0.conv1.conv",
    "features.3": "stages.1.conv2.conv",
    "features.6": "stages.2.conv3.conv",
    "features.8": "stages.2.conv4.conv",
    "features.10": "stages.2.conv5.conv",
    "classifier.1": "head.fc1",
    "classifier.4": "head.fc2",
    "classifier.6": "head.fc",
}


def _alexnet_checkpoint_filter(state: StateDict, model: nn.Module) -> StateDict:
    """Rename torchvision's keys onto ours; our own layout passes through.

    A conv1 weight made for another ``in_chans`` is left to
    :func:`~cvtasks.backbones.weights.load_pretrained`, which adapts it to the model's input
    channels as timm does, with a warning.
    """
    if "features.0.weight" in state:
        state = rename_modules(state, _TORCHVISION_NAMES)
    return state


def _create_alexnet(variant: str, **kwargs: Any) -> AlexNet:
    """Build an :class:`AlexNet` from a variant's row of ``ARCHS`` plus the user's keywords.

    ``pretrained`` may be a cvtasks or a torchvision ``alexnet`` checkpoint.
    """
    return build_with_weights(
        AlexNet, variant, key_map=_alexnet_checkpoint_filter, **ARCHS[variant], **kwargs
    )


@BACKBONES.register("alexnet")
@input_size(ARCHS["alexnet"]["input_size"])
def alexnet(**kwargs: Any) -> AlexNet:
    """torchvision's one-GPU AlexNet: 64-192-384-256-256 convs, 224x224, 61.1M parameters."""
    return _create_alexnet("alexnet", **kwargs)


@BACKBONES.register("alexnet_seed")
@input_size(ARCHS["alexnet_seed"]["input_size"])
def alexnet_seed(**kwargs: Any) -> AlexNet:
    """The seed's AlexNet: conv1 96 x 11x11/4 on 227x227 → 55x55x96 (seed 003, CS231n notes)."""
    return _create_alexnet("alexnet_seed", **kwargs)
