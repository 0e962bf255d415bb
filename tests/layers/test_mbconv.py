from functools import partial

import pytest
import torch
from torch import nn
from torchvision.models._utils import _make_divisible
from torchvision.models.efficientnet import MBConv as TorchvisionMBConv
from torchvision.models.efficientnet import MBConvConfig
from torchvision.ops.misc import SqueezeExcitation

from cvtasks.layers import (
    DropPath,
    MBConv,
    SqueezeExcite,
    drop_path,
    make_divisible,
    remap_conv_norm_act_keys,
)
from tests.layers.conftest import randomize_bn


@pytest.mark.parametrize(
    ("expand", "kernel", "stride", "in_chs", "out_chs"),
    [(1, 3, 1, 32, 16), (6, 3, 2, 16, 24), (6, 5, 1, 24, 24), (6, 5, 2, 40, 80), (4, 3, 1, 16, 16)],
)
def test_matches_torchvision_mbconv(expand, kernel, stride, in_chs, out_chs):
    torch.manual_seed(0)
    cnf = MBConvConfig(expand, kernel, stride, in_chs, out_chs, num_layers=1)
    theirs = randomize_bn(TorchvisionMBConv(cnf, 0.2, nn.BatchNorm2d)).eval()
    ours = MBConv(in_chs, out_chs, kernel, stride, expand, drop_path=0.2).eval()
    assert ours.has_skip == theirs.use_res_connect
    ours.load_state_dict(remap_conv_norm_act_keys(theirs.state_dict(), ours))  # strict
    x = torch.randn(2, in_chs, 10, 10)
    torch.testing.assert_close(ours(x), theirs(x))


def test_squeeze_channels_come_from_the_input_channels():
    block = MBConv(40, 80, 3, 2, 6)
    se = block.block[2]
    assert isinstance(se, SqueezeExcite)
    assert (se.fc1.in_channels, se.fc1.out_channels) == (240, 10)  # max(1, 40 // 4), not 240 // 4
    assert len(MBConv(16, 16, 3, 1, 1).block) == 3  # no expansion conv at ratio 1
    assert len(MBConv(16, 16, 3, 1, 6, se_ratio=0).block) == 3  # no SE


def test_squeeze_excite_matches_torchvision():
    torch.manual_seed(0)
    theirs = SqueezeExcitation(16, 4, activation=partial(nn.SiLU, inplace=True))
    ours = SqueezeExcite(16, 4)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 16, 5, 5)
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("value", [3, 8, 18, 24.5, 96, 100, 1000, 6 * 38])
def test_make_divisible_matches_torchvision(value):
    assert make_divisible(value) == _make_divisible(value, 8)


def test_drop_path_drops_whole_samples_and_keeps_the_mean():
    torch.manual_seed(0)
    p = 0.3
    x = torch.ones(20_000, 3, 2, 2)
    out = drop_path(x, p, training=True)
    per_sample = out.flatten(1)
    # each sample is all zeros or all 1 / (1 - p)
    assert torch.all(per_sample.amin(1) == per_sample.amax(1))
    assert per_sample[:, 0].unique().tolist() == pytest.approx([0.0, 1 / (1 - p)])
    dropped = (per_sample[:, 0] == 0).float().mean().item()
    assert dropped == pytest.approx(p, abs=0.015)  # 4.6 standard deviations
    assert out.mean().item() == pytest.approx(1.0, abs=0.025)
    assert drop_path(x, p, training=False) is x
    assert torch.all(drop_path(x, 1.0, training=True) == 0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DropPath(1.5)


def test_residual_branch_is_dropped_only_in_training():
    torch.manual_seed(0)
    block = MBConv(8, 8, 3, 1, 4, drop_path=1.0)
    x = torch.randn(4, 8, 6, 6)
    torch.testing.assert_close(block(x), x)  # p = 1: only the shortcut is left
    block.eval()
    assert not torch.allclose(block(x), x)


def test_channels_last_forward_backward():
    block = MBConv(8, 16, 3, 2, 6, drop_path=0.1)
    x = torch.randn(2, 8, 8, 8).to(memory_format=torch.channels_last).requires_grad_()
    out = block.to(memory_format=torch.channels_last)(x)
    assert out.shape == (2, 16, 4, 4)
    out.mean().backward()
    assert x.grad is not None and all(p.grad is not None for p in block.parameters())


def test_compiles_fullgraph():
    torch.manual_seed(0)
    block = MBConv(8, 8, 3, 1, 4, drop_path=0.2)
    x = torch.randn(2, 8, 8, 8)
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    out = compiled(x)  # training: batch statistics and stochastic depth inside the graph
    out.mean().backward()
    block.eval()
    torch.testing.assert_close(compiled(x), block(x))
