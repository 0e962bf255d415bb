"""GoogLeNet (Inception v1), as seed 001 describes it, with its intermediate losses.

The inception network "works by composing multiple sub-networks into a bigger network": nine
inception modules in series (seed 001 §6.5, "Inception and
Networks within a Network"), each the four parallel paths of Fig 6.13 (built by
:class:`cvtasks.layers.Inception`): ``1x1 | 1x1→3x3 | 1x1→5x5 | 3x3 max-pool→1x1``. At 224x224:

===========  ===================================================  ==========
layer        what (inception: in → 1x1 | 3x3 red → 3x3 | 5x5 red →  output
             5x5 | pool proj)
===========  ===================================================  ==========
conv1        7x7 conv 64, stride 2                                64@112x112
maxpool1     3x3 max-pool, stride 2                               64@56x56
conv2        1x1 conv 64                                          64@56x56
conv3        3x3 conv 192                                         192@56x56
maxpool2     3x3 max-pool, stride 2                               192@28x28
inception3a  192 → 64 | 96 → 128 | 16 → 32 | 32 (Fig 6.13)        256@28x28
inception3b  256 → 128 | 128 → 192 | 32 → 96 | 64                 480@28x28
maxpool3     3x3 max-pool, stride 2                               480@14x14
inception4a  480 → 192 | 96 → 208 | 16 → 48 | 64                  512@14x14
inception4b  512 → 160 | 112 → 224 | 24 → 64 | 64                 512@14x14
inception4c  512 → 128 | 128 → 256 | 24 → 64 | 64                 512@14x14
inception4d  512 → 112 | 144 → 288 | 32 → 64 | 64                 528@14x14
inception4e  528 → 256 | 160 → 320 | 32 → 128 | 128               832@14x14
maxpool4     3x3 max-pool, stride 2                               832@7x7
inception5a  832 → 256 | 160 → 320 | 32 → 128 | 128               832@7x7
inception5b  832 → 384 | 192 → 384 | 48 → 128 | 128               1024@7x7
head         global average pool, dropout 0.4, linear             num_classes
===========  ===================================================  ==========

That is the seed's "22 parameterized layers with a total of 9 inception modules, two
convolutional layers as initial layers, and only a single dense layer at the output":
3 stem convolutions (the seed counts the 1x1 reduction conv2 with conv3) + 2 per module + 1 dense
layer = 22 deep. The channel table is Table 1 of Szegedy et al. 2014, the paper the seed cites.

Decisions:

* **Real 5x5 convolutions** on the third path, as the seed says (Fig 6.13). torchvision's
  GoogLeNet uses 3x3 there (its issue #906) and otherwise has our tensors, names and shapes.
  ``pretrained=torchvision`` takes all of its weights: each 3x3 kernel zero-padded to 5x5 (a 3x3
  convolution with padding 1 is a 5x5 one with padding 2 whose kernel is the 3x3 one ringed with
  zeros), and every BatchNorm running variance raised by ``1e-3 - eps`` (torchvision normalizes
  with eps 1e-3). In eval mode the network then computes torchvision's pretrained function on
  inputs normalized with mean 0.5 and std 0.5 (what torchvision's ``transform_input`` feeds its
  network; ``model.pretrained_cfg`` says so); training goes on with real 5x5 kernels from there.
  ``pretrained`` also loads cvtasks' own checkpoints of this network unchanged.
* **BatchNorm after every convolution** (:class:`cvtasks.layers.ConvNormAct`, torchvision's layout).
  The 2014 network had none: it relied on local response normalization in the stem and on the
  intermediate losses to get gradients into the early layers. With BN (the "batch normalization
  inception model", seed 001's notes and references) it trains from scratch with a plain optimizer.
  ``norm_layer=None`` gives the 2014 convolutions with bias (without LRN): 6,998,552 parameters with
  a 1000-class classifier and no auxiliary heads (BN: 7,005,832). The seed's "about 6.8 million" is
  the rounded total that the 2014 paper quotes; the tests count the layers.
* **Max-pools round up** (``ceil_mode``), as the original Caffe model and torchvision: a window
  hanging over the right/bottom edge pools the elements it covers (the partial windows of
  seed 003's SAS notes), so 112 → 56 → 28 → 14 → 7.

Intermediate losses: "in addition to the final loss function at the exit of the network, the loss
is also computed at various intermediate exit points and the gradient based optimization uses the
sum of all loss functions" (seed 001 §6.5). :class:`InceptionAux` heads on the outputs of
inception4a (512 ch) and inception4d (528 ch) exist only after :meth:`GoogLeNet.init_aux` (the
classification task calls it when ``aux_weight > 0``) or with ``aux_logits=True``. They run only
in :meth:`GoogLeNet.forward_features_aux`, which the task uses in training;
:meth:`GoogLeNet.forward_features` (inference, export) never computes them.

Stages for ``forward_features``: conv1 (64 ch, reduction 2), conv3 (192, 4), inception3b (480, 8),
inception4e (832, 16), inception5b (1024, 32).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvtasks.backbones.base import Backbone
from cvtasks.backbones.weights import StateDict, build_with_weights
from cvtasks.layers import ConvNormAct, Inception, check_head_args
from cvtasks.layers.norm import NormLayer
from cvtasks.registry import BACKBONES

#: Szegedy et al. 2014 Table 1: in_chs, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj.
INCEPTION_CFG: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),  # seed 001 Fig 6.13
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}
AUX_INPUTS = {"aux1": 512, "aux2": 528}  # inception4a and inception4d outputs

log = logging.getLogger(__name__)


class InceptionAux(nn.Module):
    """An intermediate exit point (seed 001 §6.5): pool, 1x1 conv 128, FC 1024, dropout, FC.

    Szegedy et al. 2014 §5: 5x5 average pooling with stride 3 (4x4 out of the 14x14 maps of a
    224x224 input), a 1x1 convolution with 128 filters and ReLU, a fully connected layer of 1024
    units with ReLU, 70% dropout and a linear classifier. Other input sizes pool adaptively to
    4x4, so the fully connected layer keeps its 128·4·4 = 2048 inputs. Module names are
    torchvision's ``InceptionAux`` (``conv``, ``fc1``, ``fc2``).

    Args:
        in_chs: channels of the inception output it reads.
        num_classes: logits.
        drop_rate: dropout before the classifier.
        norm_layer: norm after the 1x1 convolution (as in the trunk).
    """

    def __init__(
        self,
        in_chs: int,
        num_classes: int,
        drop_rate: float = 0.7,
        norm_layer: NormLayer = "batchnorm",
    ) -> None:
        super().__init__()
        self.conv = ConvNormAct(in_chs, 128, kernel_size=1, norm_layer=norm_layer)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.act = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(drop_rate)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_chs, H, W] -> [B, num_classes]``."""
        # A shape test, not a value test: torch.compile specializes on it without a graph break.
        if x.shape[-2:] == (14, 14):
            x = F.avg_pool2d(x, kernel_size=5, stride=3)
        else:
            x = F.adaptive_avg_pool2d(x, 4)
        x = self.act(self.fc1(self.conv(x).flatten(1)))
        return self.fc2(self.dropout(x))


class GoogLeNet(Backbone):
    """GoogLeNet (see the module docstring for the layer table and the seed citations).

    Args:
        in_chans: input channels.
        num_classes: logits of :meth:`forward`; 0 returns the pooled 1024 features.
        drop_rate: dropout before the classifier (0.4 in Szegedy et al. 2014).
        aux_logits: build both auxiliary classifiers now (needs ``num_classes > 0``), as
            torchvision does; the classification task builds them itself through
            :meth:`init_aux`, so leave this off there.
        aux_drop_rate: dropout in the auxiliary classifiers (0.7 in Szegedy et al. 2014).
        norm_layer: norm after every convolution; ``None`` gives the 2014 convolutions with bias.

    Attributes:
        aux_enabled: whether the auxiliary classifiers exist (``forward_features_aux`` works).
    """

    # The auxiliary heads depend on num_classes like fc, and a checkpoint may have them or not.
    classifier_modules = ("fc", "aux1", "aux2")
    stem_weight = "conv1.conv.weight"

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 0,
        drop_rate: float = 0.4,
        aux_logits: bool = False,
        aux_drop_rate: float = 0.7,
        norm_layer: NormLayer = "batchnorm",
    ) -> None:
        super().__init__()
        check_head_args(num_classes, aux_drop_rate, dropout_name="aux_drop_rate", minimum=0)
        if aux_logits and not num_classes:
            raise ValueError(
                "aux_logits=True needs num_classes > 0 (the auxiliary classifiers predict "
                "classes); in a task, set task.aux_weight > 0 instead and the task builds them"
            )
        self.in_chans = in_chans
        self.aux_drop_rate = aux_drop_rate
        self.norm_layer = norm_layer

        def conv(cin: int, cout: int, k: int, stride: int = 1) -> ConvNormAct:
            return ConvNormAct(cin, cout, kernel_size=k, stride=stride, norm_layer=norm_layer)

        def pool() -> nn.MaxPool2d:
            return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)

        self.conv1 = conv(in_chans, 64, 7, stride=2)
        self.maxpool1 = pool()
        self.conv2 = conv(64, 64, 1)
        self.conv3 = conv(64, 192, 3)
        self.maxpool2 = pool()
        for name in ("inception3a", "inception3b"):
            self.add_module(name, Inception(*INCEPTION_CFG[name], norm_layer=norm_layer))
        self.maxpool3 = pool()
        for name in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
            self.add_module(name, Inception(*INCEPTION_CFG[name], norm_layer=norm_layer))
        self.maxpool4 = pool()
        for name in ("inception5a", "inception5b"):
            self.add_module(name, Inception(*INCEPTION_CFG[name], norm_layer=norm_layer))
        self.feature_info = [
            dict(num_chs=64, reduction=2, module="conv1"),
            dict(num_chs=192, reduction=4, module="conv3"),
            dict(num_chs=480, reduction=8, module="inception3b"),
            dict(num_chs=832, reduction=16, module="inception4e"),
            dict(num_chs=1024, reduction=32, module="inception5b"),
        ]
        self.num_features = 1024
        self.init_head(num_classes, drop_rate)

        self.aux_enabled = False
        self.aux1: InceptionAux | None = None
        self.aux2: InceptionAux | None = None
        self._init_weights()
        if aux_logits:
            self.init_aux(num_classes)

    def _init_weights(self, root: nn.Module | None = None) -> None:
        # He init over the fan-in keeps the activations' scale through 22 ReLU layers even
        # without BN (norm_layer=None, or eval before BN has statistics): the fan-out variant
        # blows up 100x here, as the 1x1 reductions have far fewer outputs than inputs. The
        # linear layers start small, as torchvision's GoogLeNet, so the first logits are even.
        for module in (self if root is None else root).modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)

    def init_aux(self, num_classes: int) -> None:
        """Build both auxiliary classifiers (on inception4a and inception4d) for ``num_classes``.

        Existing ones with the same number of classes are kept (e.g. loaded with ``pretrained``);
        the new ones are created on the device and in the dtype of the network.

        Args:
            num_classes: logits of each auxiliary classifier (> 0).

        Raises:
            ValueError: ``num_classes`` is not a positive int.
        """
        check_head_args(num_classes, self.aux_drop_rate, dropout_name="aux_drop_rate", minimum=0)
        if not num_classes:
            raise ValueError("init_aux needs num_classes > 0")
        if self.aux_enabled and self.aux1.fc2.out_features == num_classes:
            return
        weight = self.conv1.conv.weight
        for name, in_chs in AUX_INPUTS.items():
            head = InceptionAux(in_chs, num_classes, self.aux_drop_rate, self.norm_layer)
            self._init_weights(head)
            head.to(device=weight.device, dtype=weight.dtype).train(self.training)
            setattr(self, name, head)
        self.aux_enabled = True

    def _forward(
        self, x: torch.Tensor, with_aux: bool
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        c1 = self.conv1(x)
        c3 = self.conv3(self.conv2(self.maxpool1(c1)))
        s3 = self.inception3b(self.inception3a(self.maxpool2(c3)))
        x = self.inception4a(self.maxpool3(s3))
        aux = [self.aux1(x)] if with_aux else []
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        if with_aux:
            aux.append(self.aux2(x))
        s4 = self.inception4e(x)
        s5 = self.inception5b(self.inception5a(self.maxpool4(s4)))
        return [c1, c3, s3, s4, s5], aux

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """conv1, conv3, inception3b, 4e and 5b maps: 64@112, 192@56, 480@28, 832@14, 1024@7.

        The auxiliary classifiers are not run (inference and export see the plain network).
        """
        return self._forward(x, with_aux=False)[0]

    def forward_features_aux(
        self, x: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The maps of :meth:`forward_features` and the two auxiliary classifiers' logits.

        Returns:
            ``(features, [aux1_logits, aux2_logits])``, logits ``[B, num_classes]`` each.

        Raises:
            RuntimeError: the auxiliary classifiers were never built.
        """
        if not self.aux_enabled:
            raise RuntimeError(
                "GoogLeNet has no auxiliary classifiers: call init_aux(num_classes) or build it "
                "with aux_logits=True and num_classes > 0"
            )
        return self._forward(x, with_aux=True)


#: torchvision's BasicConv2d normalizes with this epsilon; ours is the norm layer's own.
TORCHVISION_BN_EPS = 1e-3


def _torchvision_googlenet_filter(state: StateDict, model: nn.Module) -> StateDict:
    """Take torchvision's GoogLeNet weights into ours; our own checkpoints pass through unchanged.

    torchvision's layout is told by its 3x3 kernels on the inception modules' third path. Each
    is zero-padded to our 5x5 (same function at padding 2 instead of 1), and each BatchNorm
    running variance gets ``1e-3 - eps`` added, so that ``var + eps`` and with it eval-mode
    normalization are torchvision's.
    """
    third_path = state.get("inception3a.branch3.1.conv.weight")
    if third_path is None or third_path.shape[-2:] != (3, 3):
        return state
    state = dict(state)
    for name in INCEPTION_CFG:
        key = f"{name}.branch3.1.conv.weight"
        if key in state and state[key].shape[-2:] == (3, 3):
            state[key] = F.pad(state[key], (1, 1, 1, 1))
    eps = {
        f"{n}.running_var": m.eps for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)
    }
    for key in eps.keys() & state.keys():
        state[key] = state[key] + (TORCHVISION_BN_EPS - eps[key])
    log.info(
        "googlenet: torchvision's weights: the nine 5x5 convolutions start as its 3x3 kernels "
        "padded with zeros, and are trained as 5x5 from there; each BatchNorm running variance is "
        "raised by torchvision's eps %g minus ours, so in eval mode the network computes "
        "torchvision's function on inputs normalized with mean 0.5 and std 0.5",
        TORCHVISION_BN_EPS,
    )
    return state


@BACKBONES.register("googlenet")
def googlenet(**kwargs: Any) -> GoogLeNet:
    """GoogLeNet: stem, nine inception modules with 5x5 paths, 1024 features (seed 001).

    ``pretrained`` is a local weights file of this network, in cvtasks' layout or torchvision's,
    or ``torchvision`` for torchvision's ImageNet weights (3x3 kernels zero-padded to 5x5, inputs
    normalized with mean 0.5 and std 0.5: see the module docstring). A checkpoint made for other
    ``in_chans`` has its stem convolution adapted to them.
    """
    return build_with_weights(
        GoogLeNet, "googlenet", key_map=_torchvision_googlenet_filter, **kwargs
    )
