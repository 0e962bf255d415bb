"""Every registered backbone (and a timm one) honours the backbone contract.

Every name is built on the ``meta`` device (no weights are allocated, so even VGG-19 costs
nothing) and probed: ``feature_info``, the shapes of ``forward_features`` and the logits. The
smallest variant of each family also runs for real, forward and backward, at a small size.
"""

import math

import pytest
import torch

from cvtasks.backbones import validate_backbone
from cvtasks.registry import BACKBONES

INPUT_SIZE = {"lenet5": 32}  # LeNet-5 is defined on 32x32 (seed 003); the rest run at 64x64
#: one small variant per family (and per block kind) runs forward and backward on the CPU.
REAL = ["lenet5", "alexnet", "vgg11_bn", "googlenet", "resnet18", "efficientnet_b0"]
REAL = [name for name in REAL if name in BACKBONES] + ["timm/resnet10t"]
NAMES = [*BACKBONES.names(), "timm/resnet10t"]


def check_shapes(net, x):
    validate_backbone(net, x)
    size = x.shape[-1]
    features = net.forward_features(x)
    assert len(features) == len(net.feature_info)
    for fmap, info in zip(features, net.feature_info):
        assert fmap.shape[:2] == (x.shape[0], info["num_chs"]), info
        # a stage is never larger than the input divided by its stride product
        assert fmap.shape[-1] <= math.ceil(size / info["reduction"]), info
    assert net.num_features == net.feature_info[-1]["num_chs"]


@pytest.mark.parametrize("name", NAMES)
def test_backbone_contract_on_meta(name):
    size = INPUT_SIZE.get(name, 64)
    with torch.device("meta"):
        net = BACKBONES.build(name, in_chans=3, num_classes=5)
        x = torch.empty(2, 3, size, size)
        check_shapes(net, x)
        assert net(x).shape == (2, 5)
        assert BACKBONES.build(name, in_chans=3)(x).shape == (2, net.num_features)


@pytest.mark.parametrize("name", REAL)
def test_backbone_forward_backward(name):
    torch.manual_seed(0)
    size = INPUT_SIZE.get(name, 64)
    net = BACKBONES.build(name, in_chans=3, num_classes=5)
    x = torch.randn(2, 3, size, size)
    check_shapes(net, x)

    logits = net(x)
    assert logits.shape == (2, 5)
    logits.square().sum().backward()
    no_grad = [n for n, p in net.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without a gradient: {no_grad[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())

    pooled = BACKBONES.build(name, in_chans=3)(x)
    assert pooled.shape == (2, net.num_features)
