import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from cvtasks.layers import (
    BasicBlock,
    Bottleneck,
    ConvNormAct,
    Inception,
    MBConv,
    can_fuse,
    fuse_batchnorm,
    fuse_conv_bn,
)
from cvtasks.registry import BACKBONES
from tests.layers.conftest import randomize_bn as _randomize_bn


@pytest.mark.parametrize("bias", [False, True])
def test_fuse_conv_bn_against_conv2d_then_batch_norm(bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=bias)
    bn = _randomize_bn(nn.BatchNorm2d(6, eps=1e-3)).eval()
    x = torch.randn(2, 4, 9, 9)
    z = F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1, groups=2)
    expected = F.batch_norm(z, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0, 1e-3)
    fused = fuse_conv_bn(conv, bn)
    assert fused.bias is not None and fused.groups == 2 and fused.stride == (2, 2)
    torch.testing.assert_close(fused(x), expected, atol=1e-4, rtol=1e-4)
    assert (conv.bias is None) != bias  # the original conv is untouched


def test_only_batchnorm_with_running_stats_folds():
    conv = nn.Conv2d(4, 8, 1)
    assert can_fuse(conv, nn.BatchNorm2d(8))
    assert not can_fuse(conv, nn.BatchNorm2d(8, track_running_stats=False))
    assert not can_fuse(conv, nn.GroupNorm(2, 8))
    assert not can_fuse(conv, nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="cannot fold"):
        fuse_conv_bn(conv, nn.GroupNorm(2, 8))


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = ConvNormAct(3, 16, 3, stride=2)
        self.tv = Conv2dNormActivation(16, 16, 3)  # torchvision's Sequential(conv, bn, relu)
        self.basic = BasicBlock(16, 32, stride=2)
        self.bottleneck = Bottleneck(32, 8)
        self.mbconv = MBConv(32, 32, 3, 1, 4)
        self.inception = Inception(32, 8, 8, 16, 4, 8, 8)
        self.unfusable = nn.Sequential(nn.Conv2d(40, 8, 1), nn.ReLU(), nn.BatchNorm2d(8))

    def forward(self, x):
        x = self.basic(self.tv(self.stem(x)))
        return self.unfusable(self.inception(self.mbconv(self.bottleneck(x))))


def test_fuse_batchnorm_folds_a_whole_network():
    torch.manual_seed(0)
    net = _randomize_bn(_Net()).eval()
    x = torch.randn(2, 3, 16, 16)
    expected = net(x)
    fused = fuse_batchnorm(net)
    bns = [name for name, m in fused.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns == ["unfusable.2"]  # a BatchNorm after a ReLU is not foldable
    torch.testing.assert_close(fused(x), expected, atol=1e-4, rtol=1e-4)
    assert isinstance(net.basic.bn1, nn.BatchNorm2d)  # not in place by default
    assert isinstance(fused.basic.downsample[1], nn.Identity)
    assert fuse_batchnorm(net, inplace=True) is net
    assert isinstance(net.stem.bn, nn.Identity)


def test_timm_resnet_blocks_fold_through_known_pairs():
    torch.manual_seed(0)
    net = _randomize_bn(BACKBONES.build("timm/resnet18", num_classes=0)).eval()
    fused = fuse_batchnorm(net)
    assert not [m for m in fused.modules() if isinstance(m, nn.BatchNorm2d)]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for ours, theirs in zip(fused.forward_features(x), net.forward_features(x)):
            scale = theirs.abs().max()
            torch.testing.assert_close(ours / scale, theirs / scale, rtol=0, atol=1e-5)
