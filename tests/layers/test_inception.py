import torch
from torch import nn
from torchvision.models.googlenet import BasicConv2d
from torchvision.models.googlenet import Inception as TorchvisionInception

from cvtasks.layers import Inception

# Seed 001 Fig 6.13: 192x28x28 -> 1x1:64 | 1x1:96 -> 3x3:128 | 1x1:16 -> 5x5:32 | pool -> 1x1:32
SEED_FIG_6_13 = dict(ch1x1=64, ch3x3red=96, ch3x3=128, ch5x5red=16, ch5x5=32, pool_proj=32)


def _num_params(module):
    return sum(p.numel() for p in module.parameters())


def test_seed_figure_shape():
    block = Inception(192, **SEED_FIG_6_13)
    out = block(torch.randn(1, 192, 28, 28))
    assert out.shape == (1, 256, 28, 28) and block.out_chs == 256


def test_seed_figure_parameters_by_hand():
    # Convs with bias (the 2014 module, norm_layer=None): weights + one bias per output channel.
    path1 = 192 * 64 + 64
    path2 = (192 * 96 + 96) + (96 * 3 * 3 * 128 + 128)
    path3 = (192 * 16 + 16) + (16 * 5 * 5 * 32 + 32)
    path4 = 192 * 32 + 32  # max-pooling has no parameters
    assert path1 + path2 + path3 + path4 == 163_696
    assert _num_params(Inception(192, **SEED_FIG_6_13, norm_layer=None)) == 163_696
    # With BatchNorm the conv biases go and each conv gains a scale and a shift per channel.
    weights = 192 * 64 + 192 * 96 + 96 * 9 * 128 + 192 * 16 + 16 * 25 * 32 + 192 * 32
    norms = 2 * (64 + 96 + 128 + 16 + 32 + 32)
    assert _num_params(Inception(192, **SEED_FIG_6_13)) == weights + norms == 164_064


def test_paths_are_concatenated_in_order():
    block = Inception(8, 1, 2, 3, 2, 4, 5, norm_layer=None, act_layer=None).eval()
    x = torch.randn(1, 8, 6, 6)
    out = block(x)
    pooled = nn.functional.max_pool2d(x, 3, 1, 1)
    torch.testing.assert_close(out[:, :1], block.branch1(x))
    torch.testing.assert_close(out[:, 1:4], block.branch2(x))
    torch.testing.assert_close(out[:, 4:8], block.branch3(x))
    torch.testing.assert_close(out[:, 8:], block.branch4[1](pooled))
    assert block.branch3[1].conv.kernel_size == (5, 5)


def test_torchvision_googlenet_weights_load_key_for_key():
    torch.manual_seed(0)
    theirs = TorchvisionInception(32, 8, 8, 16, 4, 8, 8, conv_block=BasicConv2d).eval()
    ours = Inception(32, 8, 8, 16, 4, 8, 8, norm_kwargs={"eps": 1e-3}, branch3_kernel_size=3)
    ours.load_state_dict(theirs.state_dict())  # strict: identical keys and shapes
    x = torch.randn(2, 32, 12, 12)
    torch.testing.assert_close(ours.eval()(x), theirs(x))


def test_channels_last_forward_backward():
    block = Inception(16, 4, 4, 8, 2, 4, 4)
    x = torch.randn(2, 16, 8, 8).to(memory_format=torch.channels_last).requires_grad_()
    out = block.to(memory_format=torch.channels_last)(x)
    assert out.shape == (2, 20, 8, 8)
    out.mean().backward()
    assert x.grad is not None and all(p.grad is not None for p in block.parameters())
