"""Fold BatchNorm into the convolution before it, for inference and export.

In eval mode a BatchNorm is an affine map per channel, ``weight·(z - mean)/sqrt(var + eps) +
bias``, and a convolution is linear in its weights, so ``bn(conv(x))`` equals one convolution with
the weights scaled per output channel by ``s = bn.weight/sqrt(var + eps)`` and the bias
``bn.bias + s·(conv.bias - mean)``. Folding removes a memory-bound pass over every feature map.

:func:`fuse_batchnorm` folds every pair it can prove is applied back to back:

* a ``Conv2d`` followed directly by a ``BatchNorm2d`` inside an ``nn.Sequential`` (torchvision's
  ``Conv2dNormActivation``, ``downsample`` shortcuts, VGG-BN ``features``);
* the ``(conv, norm)`` attribute pairs a module lists in its ``fuse_pairs`` class attribute
  (cvtasks' ``ConvNormAct``: ``("conv", "bn")``; ``BasicBlock``: ``("conv1", "bn1"), ...``). A
  block lists a pair only when its ``forward`` feeds the conv's output straight into the norm;
* the same pairs for third-party blocks we have read, in :data:`KNOWN_FUSE_PAIRS` (timm's ResNet
  and EfficientNet families, used through ``timm/<name>`` backbones).

Only a plain ``nn.Conv2d`` folds: a subclass with its own ``forward`` (timm's ``Conv2dSame`` pads
on the fly) would lose it. A norm that also applies an activation (timm's ``BatchNormAct2d``)
leaves that activation in its place.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

_BATCHNORMS = (nn.BatchNorm2d, nn.SyncBatchNorm)

_EFFNET = "timm.models._efficientnet_blocks"
_S2D = ("conv_s2d", "bn_s2d")  # space-to-depth stem of some blocks (None in most models)

#: ``fuse_pairs`` of classes we do not own, by ``module.qualname``: in each, the forward pass
#: applies the norm directly to the conv's output (timm 1.0 ``models/resnet.py``: ``conv1 -> bn1
#: -> drop_block -> act1``; the stem ``conv1 -> bn1 -> act1 -> maxpool``;
#: ``models/_efficientnet_blocks.py``: ``conv_dw -> bn1 -> aa -> se -> conv_pw -> bn2`` and
#: the like; ``models/efficientnet.py``: ``conv_stem -> bn1``, ``conv_head -> bn2``). A stem
#: ``conv1`` that is a Sequential (deep stems) is not a Conv2d and is left alone by
#: :func:`can_fuse`.
KNOWN_FUSE_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "timm.models.resnet.BasicBlock": (("conv1", "bn1"), ("conv2", "bn2")),
    "timm.models.resnet.Bottleneck": (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
    "timm.models.resnet.ResNet": (("conv1", "bn1"),),
    "timm.models._features.FeatureListNet": (("conv1", "bn1"),),
    f"{_EFFNET}.ConvBnAct": (("conv", "bn1"),),
    f"{_EFFNET}.DepthwiseSeparableConv": (_S2D, ("conv_dw", "bn1"), ("conv_pw", "bn2")),
    f"{_EFFNET}.InvertedResidual": (
        _S2D,
        ("conv_pw", "bn1"),
        ("conv_dw", "bn2"),
        ("conv_pwl", "bn3"),
    ),
    f"{_EFFNET}.EdgeResidual": (("conv_exp", "bn1"), ("conv_pwl", "bn2")),
    "timm.models.efficientnet.EfficientNet": (("conv_stem", "bn1"), ("conv_head", "bn2")),
    "timm.models.efficientnet.EfficientNetFeatures": (("conv_stem", "bn1"),),
}

#: norms that apply their ``drop`` and ``act`` children after normalizing (timm's ``norm_act``)
_NORM_ACT = ("timm.layers.norm_act.BatchNormAct2d", "timm.layers.norm_act.SyncBatchNormAct")


def _qualname(module: nn.Module) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def fuse_pairs_of(module: nn.Module) -> tuple[tuple[str, str], ...]:
    """The ``(conv, norm)`` attribute pairs of ``module``: its own ``fuse_pairs`` or known ones."""
    own = getattr(module, "fuse_pairs", None)
    if own is not None:
        return tuple(own)
    return KNOWN_FUSE_PAIRS.get(_qualname(module), ())


def _plain_norm(bn: nn.Module) -> bool:
    """A BatchNorm whose forward is only the normalization, or a known norm + activation."""
    return type(bn) in _BATCHNORMS or _qualname(bn) in _NORM_ACT


def after_folding(bn: nn.Module) -> nn.Module:
    """What stays in a folded norm's place: nothing, or the activation a norm + act applies."""
    if _qualname(bn) in _NORM_ACT:
        return nn.Sequential(bn.drop, bn.act)
    return nn.Identity()


def can_fuse(conv: nn.Module, bn: nn.Module) -> bool:
    """Whether ``bn`` (right after ``conv``) can be folded into ``conv``.

    True for an ``nn.Conv2d`` (not a subclass with its own ``forward``) and a ``BatchNorm2d``/
    ``SyncBatchNorm`` (or timm's norm + activation) with running statistics over the conv's
    output channels.
    """
    return (
        isinstance(conv, nn.Conv2d)
        and type(conv).forward is nn.Conv2d.forward
        and isinstance(bn, _BATCHNORMS)
        and _plain_norm(bn)
        and bn.running_mean is not None
        and bn.running_var is not None
        and bn.num_features == conv.out_channels
    )


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    """A new ``nn.Conv2d`` (with bias) computing ``bn(conv(x))`` with ``bn``'s running statistics.

    The result equals the pair in eval mode; ``conv`` and ``bn`` are left unchanged.

    Args:
        conv: the convolution (any stride, padding, dilation, groups; with or without bias).
        bn: the ``BatchNorm2d`` applied to its output.

    Returns:
        The folded convolution, in ``conv``'s training mode, dtype and device.

    Raises:
        ValueError: the pair cannot be folded (see :func:`can_fuse`).
    """
    if not can_fuse(conv, bn):
        raise ValueError(
            f"cannot fold {type(bn).__name__} into {type(conv).__name__}: need an nn.Conv2d "
            "followed by a BatchNorm2d with running statistics over its output channels"
        )
    with torch.no_grad():
        weight, bias = fuse_conv_bn_weights(
            conv.weight,
            conv.bias,
            bn.running_mean,
            bn.running_var,
            bn.eps,
            bn.weight,
            bn.bias,
        )
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
        device="meta",  # no throw-away initialisation: the parameters are replaced below
    )
    fused.weight = nn.Parameter(weight.detach(), requires_grad=conv.weight.requires_grad)
    fused.bias = nn.Parameter(bias.detach(), requires_grad=conv.weight.requires_grad)
    return fused.train(conv.training)


def fuse_batchnorm(module: nn.Module, inplace: bool = False) -> nn.Module:
    """Fold every BatchNorm that directly follows a convolution in ``module``'s tree.

    Each folded norm becomes ``nn.Identity`` (so module paths and ``forward`` code stay valid; a
    norm + activation becomes its activation) and its convolution gains the folded weights and
    bias. The result uses the running statistics:
    its outputs equal ``module``'s in eval mode. Call it on an inference copy, not on a model
    that is still training.

    Args:
        module: any module tree: a backbone, a block, a ``ConvNormAct``, a torchvision model.
        inplace: fold in ``module`` itself instead of a deep copy.

    Returns:
        The folded module (``module`` itself when ``inplace``).
    """
    if not inplace:
        module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for conv_name, bn_name in fuse_pairs_of(parent):
            conv, bn = getattr(parent, conv_name, None), getattr(parent, bn_name, None)
            if can_fuse(conv, bn):
                setattr(parent, conv_name, fuse_conv_bn(conv, bn))
                setattr(parent, bn_name, after_folding(bn))
        if isinstance(parent, nn.Sequential):
            names = list(parent._modules)
            for first, second in itertools.pairwise(names):
                conv, bn = parent._modules[first], parent._modules[second]
                if can_fuse(conv, bn):
                    parent._modules[first] = fuse_conv_bn(conv, bn)
                    parent._modules[second] = after_folding(bn)
    return module
