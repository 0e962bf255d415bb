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


@pytest.mark.parametrize(
    "make", [lambda p: BasicBlock(8, 8, drop_path=p), lambda p: Bottleneck(32, 8, drop_path=p)]
)
def test_drop_path_drops_the_branch_in_training_only(make):
    torch.manual_seed(0)
    plain, dropping = randomize_bn(make(0.0)), make(1.0)
    assert isinstance(plain.drop_path, nn.Identity)  # rate 0: torchvision's graph
    dropping.load_state_dict(plain.state_dict())  # strict: drop_path holds no parameters
    x = torch.randn(2, 32 if isinstance(plain, Bottleneck) else 8, 5, 5)
    with torch.no_grad():
        dropping.eval()
        torch.testing.assert_close(dropping(x), plain.eval()(x))  # eval: the whole block
        dropping.train()
        torch.testing.assert_close(dropping(x), torch.relu(x))  # every branch dropped


def test_avg_down_shortcut_pools_then_projects():
    torch.manual_seed(0)
    block = randomize_bn(BasicBlock(8, 16, stride=2, avg_down=True))
    assert [k for k in block.state_dict() if k.startswith("downsample")][:2] == [
        "downsample.1.weight",
        "downsample.2.weight",
    ]  # timm's downsample_avg layout: the pool at index 0
    x = torch.randn(2, 8, 7, 7)
    pooled = nn.functional.avg_pool2d(x, 2, 2, ceil_mode=True, count_include_pad=False)
    expected = block.downsample[2](block.downsample[1](pooled))
    with torch.no_grad():
        torch.testing.assert_close(block.downsample(x), expected)
        assert block(x).shape == (2, 16, 4, 4)
