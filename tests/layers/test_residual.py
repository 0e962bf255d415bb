import pytest
import torch
from torch import nn
from torchvision.models import resnet as tv

from cvtasks.layers.residual import BasicBlock, Bottleneck
from tests.layers.conftest import randomize_bn


def _projection(in_chs, out_chs, stride):
    """torchvision ResNet's option-B shortcut (``ResNet._make_layer``)."""
    if stride == 1 and in_chs == out_chs:
        return None
    return nn.Sequential(tv.conv1x1(in_chs, out_chs, stride), nn.BatchNorm2d(out_chs))


def _compare(ours, theirs, in_chs):
    theirs.load_state_dict(ours.state_dict())  # strict: same names and shapes
    x = torch.randn(2, in_chs, 9, 9)
    for mode in (True, False):  # batch statistics, then running statistics
        ours.train(mode), theirs.train(mode)
        torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize(("in_chs", "out_chs", "stride"), [(8, 8, 1), (8, 16, 2), (8, 16, 1)])
def test_basic_block_matches_torchvision(in_chs, out_chs, stride):
    torch.manual_seed(0)
    ours = randomize_bn(BasicBlock(in_chs, out_chs, stride))
    assert (ours.downsample is None) == (stride == 1 and in_chs == out_chs)
    theirs = tv.BasicBlock(in_chs, out_chs, stride, _projection(in_chs, out_chs, stride))
    _compare(ours, theirs, in_chs)


@pytest.mark.parametrize(
    ("in_chs", "mid_chs", "stride", "groups"), [(16, 4, 1, 1), (8, 4, 2, 1), (16, 8, 2, 2)]
)
def test_bottleneck_matches_torchvision_v1_5(in_chs, mid_chs, stride, groups):
    torch.manual_seed(0)
    ours = randomize_bn(Bottleneck(in_chs, mid_chs, stride, groups=groups))
    assert ours.out_chs == 4 * mid_chs and ours.conv2.stride == (stride, stride)
    base_width = 64 // groups  # torchvision's width = planes · base_width / 64 · groups
    theirs = tv.Bottleneck(
        in_chs, mid_chs, stride, _projection(in_chs, 4 * mid_chs, stride), groups, base_width
    )
    _compare(ours, theirs, in_chs)


def test_shortcut_is_added_before_the_last_activation():
    block = BasicBlock(4, 4).eval()
    block.zero_init_last()
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(block(x), torch.relu(x))  # F(x) = 0: act(0 + x)
    bottleneck = Bottleneck(8, 4, expansion=2).eval()
    bottleneck.zero_init_last()
    torch.testing.assert_close(bottleneck(x.repeat(1, 2, 1, 1)), torch.relu(x.repeat(1, 2, 1, 1)))


def test_dilation_keeps_resolution():
    x = torch.randn(1, 8, 10, 10)
    assert BasicBlock(8, 8, dilation=2)(x).shape == (1, 8, 10, 10)
    assert Bottleneck(8, 4, dilation=4)(x).shape == (1, 16, 10, 10)


@pytest.mark.parametrize("block", [BasicBlock(4, 8, stride=2), Bottleneck(4, 2, stride=2)])
def test_channels_last_forward_backward(block):
    x = torch.randn(2, 4, 8, 8)
    expected = block(x)
    xc = x.to(memory_format=torch.channels_last).requires_grad_()
    out = block.to(memory_format=torch.channels_last)(xc)
    torch.testing.assert_close(out, expected)
    out.mean().backward()
    assert xc.grad is not None and all(p.grad is not None for p in block.parameters())
