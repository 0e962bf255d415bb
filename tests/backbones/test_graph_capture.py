"""Backbone code paths are captured whole by ``torch.compile(fullgraph=True)``: no graph breaks.

Family members differ only in widths and depths, so one member per code path is traced; the
eager backend checks capture without code generation. ResNet-18, VGG-11, EfficientNet-B0 and
GoogLeNet (auxiliary heads included) are compiled with inductor in their own test files, and
``benchmarks/graph_breaks.py`` traces every registered backbone.
"""

import pytest
import torch

from cvtasks.registry import BACKBONES

# The code paths not compiled elsewhere: LeNet-5, both AlexNet layouts, VGG with BN, Bottleneck.
CODE_PATHS = {"lenet5": 32, "alexnet": 64, "alexnet_seed": 67, "vgg11_bn": 32, "resnet50": 32}


@pytest.mark.parametrize(("name", "size"), CODE_PATHS.items())
def test_training_forward_has_no_graph_break(name, size):
    torch.manual_seed(0)
    net = BACKBONES.build(name, num_classes=5).train()
    torch._dynamo.reset()
    x = torch.randn(2, 3, size, size)
    torch.manual_seed(1)
    captured = torch.compile(net, fullgraph=True, backend="eager")(x)
    torch.manual_seed(1)  # the same dropout masks
    torch.testing.assert_close(captured, net(x))
