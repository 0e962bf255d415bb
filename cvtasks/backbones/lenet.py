"""LeNet-5, as the seed documents give it.

Layer by layer (seed 003: its LeNet Q&A and the Theano LeNet tutorial), on a 32x32 input:

======  ===========================================  ===========  ==========================
layer   what                                         output       parameters
======  ===========================================  ===========  ==========================
C1      6 kernels of in_chans x 5x5, stride 1, no    6@28x28      6·(in_chans·25 + 1)
        padding (seed 003, LeNet Q&A)
S2      2x2 subsampling, stride 2                    6@14x14      0
C3      16 kernels of 6x5x5 over *all* S2 maps       16@10x10     16·(6·25 + 1) = 2,416
        (seed 003, LeNet Q&A)
S4      2x2 subsampling, stride 2                    16@5x5       0
C5      120 kernels of 16x5x5                        120@1x1      120·(16·25 + 1) = 48,120
F6      fully connected                              84           84·(120 + 1) = 10,164
out     fully connected                              num_classes  num_classes·(84 + 1)
======  ===========================================  ===========  ==========================

C3 uses the full connection pattern: the Theano tutorial (seed 003, "The Full Model: LeNet") chooses
it over LeCun's table connecting each C3 map to a subset of S2 maps, since modern hardware makes the
full pattern as fast and other regularisers replace the saved parameters.

Choices, each a keyword:

* ``act_layer="tanh"``: the tutorial's non-linearity, ``h = tanh(W * x + b)`` ("Details and
  Notation"), after every conv-pool layer and in the fully connected hidden layer F6 ("Putting it
  All Together").
  ``"relu"`` (or any name or class :func:`cvtasks.layers.make_activation` takes) is allowed.
* ``pool="max"``: the tutorial's ``LeNetConvPoolLayer`` max-pools 2x2 with ``ignore_border``
  ("Putting it All Together"); ``"avg"`` gives LeCun's averaging subsampling, "often used
  historically" (seed 003, CS231n notes, "General pooling"), without LeCun's trainable coefficient,
  so the parameter count above holds. Each C layer runs conv → activation → pool. The tutorial pools
  before its tanh, which gives the same numbers for max pooling: the per-map bias and the monotone
  activation commute with a max.

Stages for ``forward_features`` are S2 (6 ch), S4 (16 ch) and C5 (120 ch), with reductions
``[2, 4, 4]``. A reduction is the product of the strides so far, as in timm: C5 shrinks the map
from 5x5 to 1x1 because a 5x5 *valid* convolution eats the border, not because it strides, so
its reduction stays 4. (Valid convolutions make every map a few pixels smaller than
``input / reduction``: 14 = (32 - 4) / 2, not 32 / 2.)

Inputs larger than 32x32 work: C5 then gives an HxW map instead of 1x1. The classifier treats F6
and the output layer as 1x1 convolutions (the FC→CONV conversion of seed 003's CS231n notes) and
averages the class scores over the positions, as the seed recommends for evaluating a converted
network on a bigger image (same section); on 32x32 this is exactly the flatten → F6 → output of
the original. With ``num_classes=0`` :meth:`LeNet5.forward` returns C5 averaged over positions.
Inputs smaller than 32x32 are refused: C5 would not fit (pad 28x28 digits to 32x32).

Weights start as in the Theano tutorial: uniform in ``±sqrt(6 / (fan_in + fan_out))`` with
``fan_in = in_maps·kh·kw`` and ``fan_out = out_maps·kh·kw // pool_area`` (seed 003, Theano
tutorial, "Putting it All Together"), biases zero. C5 and the fully connected layers have no
pooling after them (``pool_area = 1``); a fully connected layer is a 1x1 convolution
(``kh = kw = 1``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from cvtasks.backbones.base import Backbone
from cvtasks.backbones.input_size import input_size
from cvtasks.backbones.weights import StateDict, build_with_weights
from cvtasks.layers import check_head_args, make_activation
from cvtasks.registry import BACKBONES

POOLS: dict[str, type[nn.Module]] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
MIN_SIZE = 32  # C5's 5x5 kernel needs S4 maps of at least 5x5, i.e. a 32x32 input


def theano_uniform_(weight: torch.Tensor, pool_area: int = 1) -> torch.Tensor:
    """Fill ``weight`` like the Theano LeNet tutorial (seed 003), in place.

    Args:
        weight: a conv weight ``[out, in, kh, kw]`` or a linear weight ``[out, in]``.
        pool_area: elements of the pooling window after the layer (4 for 2x2, 1 for none); each
            lower unit receives gradients from ``out·kh·kw / pool_area`` units above it.

    Returns:
        ``weight``, filled from ``U(-b, b)`` with ``b = sqrt(6 / (fan_in + fan_out))``.
    """
    out_maps, in_maps, *kernel = weight.shape
    receptive = math.prod(kernel)  # 1 for a linear layer
    fan_in = in_maps * receptive
    fan_out = out_maps * receptive // pool_area  # integer division, as in the tutorial
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


class LeNet5(Backbone):
    """LeNet-5 (see the module docstring for the layer table and the seed citations).

    Args:
        in_chans: input channels (1 for digits, 3 for colour images).
        num_classes: size of the output layer; 0 builds neither F6 nor the output layer.
        drop_rate: dropout between F6 and the output layer.
        act_layer: non-linearity, a name (``"tanh"``, ``"relu"``) or an ``nn.Module`` class.
        pool: ``"max"`` (Theano tutorial) or ``"avg"`` (LeCun's subsampling).
    """

    classifier_modules = ("f6", "out")
    default_input_size = MIN_SIZE

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 0,
        drop_rate: float = 0.0,
        act_layer: str | type[nn.Module] = "tanh",
        pool: str = "max",
    ) -> None:
        super().__init__()
        check_head_args(num_classes, drop_rate, dropout_name="drop_rate", minimum=0)
        if pool not in POOLS:
            raise ValueError(
                f"pool must be one of {sorted(POOLS)} (CS231n, general pooling), got {pool!r}"
            )
        pool_layer = POOLS[pool]
        self.num_classes = num_classes
        self.drop_rate = drop_rate

        self.c1 = nn.Conv2d(in_chans, 6, kernel_size=5)  # LeNet Q&A: 6 kernels in x 5x5
        self.act1 = make_activation(act_layer)
        self.s2 = pool_layer(kernel_size=2, stride=2)
        self.c3 = nn.Conv2d(6, 16, kernel_size=5)  # LeNet Q&A: 16 kernels 6x5x5
        self.act3 = make_activation(act_layer)
        self.s4 = pool_layer(kernel_size=2, stride=2)
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)
        self.act5 = make_activation(act_layer)
        self.feature_info = [
            dict(num_chs=6, reduction=2, module="s2"),
            dict(num_chs=16, reduction=4, module="s4"),
            dict(num_chs=120, reduction=4, module="act5"),  # valid conv: smaller, same stride
        ]
        self.num_features = 120

        # F6 and the output layer act on C5's channels at each position (1x1 convs, FC→CONV).
        self.f6 = nn.Linear(120, 84) if num_classes else nn.Identity()
        self.act6 = make_activation(act_layer) if num_classes else nn.Identity()
        self.head_drop = nn.Dropout(drop_rate)
        self.out = nn.Linear(84, num_classes) if num_classes else nn.Identity()

        self._init_weights()

    def _init_weights(self) -> None:
        pools = {self.c1: 4, self.c3: 4}  # layers followed by 2x2 subsampling
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                theano_uniform_(module.weight, pool_area=pools.get(module, 1))
                nn.init.zeros_(module.bias)  # as in the Theano tutorial

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """S2, S4 and C5 maps: ``[B,6,14,14]``, ``[B,16,5,5]``, ``[B,120,1,1]`` at 32x32.

        Raises:
            ValueError: an input smaller than 32x32.
        """
        if min(x.shape[-2:]) < MIN_SIZE:
            raise ValueError(
                f"LeNet-5 needs inputs of at least {MIN_SIZE}x{MIN_SIZE} (C5 is a 5x5 valid "
                f"convolution over S4), got {tuple(x.shape[-2:])}. Pad or resize the images to "
                f"{MIN_SIZE}x{MIN_SIZE}, as LeCun padded 28x28 digits."
            )
        s2 = self.s2(self.act1(self.c1(x)))
        s4 = self.s4(self.act3(self.c3(s2)))
        c5 = self.act5(self.c5(s4))
        return [s2, s4, c5]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Class scores from the C5 map ``[B, 120, H, W]`` (``H = W = 1`` at 32x32).

        Args:
            x: the C5 map.
            pre_logits: return C5 averaged over positions ``[B, 120]``.

        Returns:
            ``[B, num_classes]`` scores averaged over C5's positions, or ``[B, 120]`` features.
        """
        if pre_logits or not self.num_classes:
            return x.mean(dim=(-2, -1))
        x = x.permute(0, 2, 3, 1)  # [B, H, W, 120]: F6 and out run at every position
        x = self.head_drop(self.act6(self.f6(x)))
        return self.out(x).mean(dim=(1, 2))  # average the scores (CS231n, FC→CONV)


# PyTorch LeNet layouts: C5 as ``fc1 = Linear(400, 120)`` or as ``conv3 = Conv2d(16, 120, 5)``.
_FC_C5 = {"conv1.": "c1.", "conv2.": "c3.", "fc1.": "c5.", "fc2.": "f6.", "fc3.": "out."}
_CONV_C5 = {"conv1.": "c1.", "conv2.": "c3.", "conv3.": "c5.", "fc1.": "f6.", "fc2.": "out."}


def _lenet_checkpoint_filter(state: StateDict, model: nn.Module) -> StateDict:
    """Map the common PyTorch LeNet-5 key layouts onto ours; our own layout passes through."""
    if "conv1.weight" not in state:
        return state
    renames = _CONV_C5 if "conv3.weight" in state else _FC_C5
    out: StateDict = {}
    for key, value in state.items():
        prefix = next((p for p in renames if key.startswith(p)), None)
        new = renames[prefix] + key[len(prefix) :] if prefix else key
        if new == "c5.weight" and value.shape == (120, 400):
            value = value.reshape(120, 16, 5, 5)  # FC→CONV (CS231n notes): same numbers
        out[new] = value
    return out


@BACKBONES.register("lenet5")
@input_size(MIN_SIZE)
def lenet5(**kwargs: Any) -> LeNet5:
    """LeNet-5: C1 6@28x28, S2, C3 16@10x10, S4, C5 120, F6 84 on a 32x32 input (seed 003).

    ``pretrained`` is a local weights file of LeNet-5, in cvtasks' layout or the common PyTorch
    one (``conv1, conv2, fc1, fc2, fc3`` or ``conv1, conv2, conv3, fc1, fc2``).
    """
    return build_with_weights(LeNet5, "lenet5", key_map=_lenet_checkpoint_filter, **kwargs)
