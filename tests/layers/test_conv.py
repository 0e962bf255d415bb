import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from cvtasks.layers import ConvNormAct, SamePad2d, make_norm, remap_conv_norm_act_keys
from cvtasks.ops import same_padding
from tests.layers.conftest import randomize_bn

SEED_INPUT = [2.0, 4.0, 6.0, 1.0, 5.0, 3.0, 2.0]  # seed 003 SAS notes, a 1x7 image


def _bare(kernel_size, **kw):
    """A 1 -> 1 channel conv without norm, activation or bias: the seed's filters."""
    return ConvNormAct(1, 1, kernel_size, norm_layer=None, act_layer=None, bias=False, **kw)


def test_seed_1x4_filter_pads_one_left_two_right():
    # seed 003 SAS notes (on CPU): [0, 2, 4, 6, 1, 5, 3, 2, 0, 0] convolved with [2, -1, 0.1, 5]
    layer = _bare((1, 4))
    assert isinstance(layer.pad, nn.ZeroPad2d) and layer.pad.padding == (1, 2, 0, 0)
    with torch.no_grad():
        layer.conv.weight.copy_(torch.tensor([2.0, -1.0, 0.1, 5.0]).view(1, 1, 1, 4))
    out = layer(torch.tensor(SEED_INPUT).view(1, 1, 1, 7))
    expected = [28.4, 5.6, 27.1, 26.5, 7.3, 7.2, 4.0]
    torch.testing.assert_close(out.flatten(), torch.tensor(expected))


def test_seed_1x2_filter_pads_zero_left_one_right():
    # seed 003 SAS notes (on GPU): [1, 2, 3, 4, 5, 0] convolved with [1, 2]
    layer = _bare((1, 2))
    with torch.no_grad():
        layer.conv.weight.copy_(torch.tensor([1.0, 2.0]).view(1, 1, 1, 2))
    out = layer(torch.arange(1.0, 6.0).view(1, 1, 1, 5))
    torch.testing.assert_close(out.flatten(), torch.tensor([5.0, 8.0, 11.0, 14.0, 5.0]))


@pytest.mark.parametrize("size", [7, 8])
@pytest.mark.parametrize(
    ("kernel", "stride", "dilation"),
    [(3, 1, 1), (4, 1, 1), (3, 2, 1), (4, 2, 1), (5, 2, 1), (3, 1, 2), (2, 3, 1), ((1, 4), 1, 1)],
)
def test_same_padding_against_explicit_pad_and_conv2d(size, kernel, stride, dilation):
    torch.manual_seed(0)
    x = torch.randn(2, 3, size, size)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    for padding in ("same", "tf_same"):
        layer = ConvNormAct(
            3, 4, kernel, stride, padding, dilation, norm_layer=None, act_layer=None
        )
        if padding == "same":  # static: d·(k - 1) zeros, the odd one after
            total_h, total_w = dilation * (kh - 1), dilation * (kw - 1)
            pads = (total_w // 2, total_w - total_w // 2, total_h // 2, total_h - total_h // 2)
        else:  # TensorFlow SAME, from the input size
            pads = same_padding(size, kw, stride, dilation) + same_padding(
                size, kh, stride, dilation
            )
        w, b = layer.conv.weight, layer.conv.bias
        expected = F.conv2d(F.pad(x, pads), w, b, stride=stride, dilation=dilation)
        out = layer(x)
        torch.testing.assert_close(out, expected)
        assert out.shape[-2:] == (math.ceil(size / stride), math.ceil(size / stride))


def test_odd_kernels_pad_symmetrically_inside_the_conv():
    layer = ConvNormAct(3, 4, 5, stride=2, dilation=2)
    assert isinstance(layer.pad, nn.Identity)
    assert layer.conv.padding == (4, 4)
    assert isinstance(ConvNormAct(3, 4, 3, stride=2, padding="tf_same").pad, SamePad2d)
    assert isinstance(ConvNormAct(3, 4, 3, stride=1, padding="tf_same").pad, nn.Identity)


def test_other_padding_specs():
    x = torch.randn(1, 2, 6, 6)
    assert ConvNormAct(2, 2, 3, padding="valid")(x).shape[-2:] == (4, 4)
    assert ConvNormAct(2, 2, 3, padding=2)(x).shape[-2:] == (8, 8)
    assert ConvNormAct(2, 2, 3, padding=(0, 1))(x).shape[-2:] == (4, 6)
    assert ConvNormAct(2, 2, 4, padding=None)(x).shape[-2:] == (5, 5)  # torchvision's rule
    explicit = ConvNormAct(2, 2, 3, padding=(0, 2, 1, 1))
    assert explicit.pad.padding == (0, 2, 1, 1) and explicit(x).shape[-2:] == (6, 6)
    with pytest.raises(ValueError, match="padding must be"):
        ConvNormAct(2, 2, 3, padding="full")


@pytest.mark.parametrize(
    ("kernel", "stride", "groups"), [(3, 1, 1), (3, 2, 4), (5, 1, 2), (1, 1, 1)]
)
def test_torchvision_conv2d_norm_activation_loads_and_matches(kernel, stride, groups):
    torch.manual_seed(0)
    theirs = randomize_bn(Conv2dNormActivation(4, 8, kernel, stride, groups=groups)).eval()
    ours = ConvNormAct(4, 8, kernel, stride, padding=None, groups=groups).eval()
    ours.load_state_dict(remap_conv_norm_act_keys(theirs.state_dict(), ours))
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(ours(x), theirs(x))


def test_bias_only_without_norm():
    assert ConvNormAct(3, 4).conv.bias is None
    assert ConvNormAct(3, 4, norm_layer=None).conv.bias is not None
    assert ConvNormAct(3, 4, bias=True).conv.bias is not None


def test_norm_and_activation_choices():
    layer = ConvNormAct(3, 8, norm_layer="groupnorm", norm_kwargs={"num_groups": 2}, act_layer=None)
    assert isinstance(layer.bn, nn.GroupNorm) and layer.bn.num_groups == 2
    assert isinstance(layer.act, nn.Identity)
    layer = ConvNormAct(
        3, 8, norm_layer=nn.BatchNorm2d, norm_kwargs={"eps": 1e-3}, act_layer="silu"
    )
    assert layer.bn.eps == 1e-3 and isinstance(layer.act, nn.SiLU)
    assert isinstance(ConvNormAct(3, 8, norm_layer=None).bn, nn.Identity)
    with pytest.raises(ValueError, match="Did you mean batchnorm"):
        make_norm("batchnrom", 8)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"kernel_size": (1, 4)},
        {"stride": 2, "padding": "tf_same"},
        {"kernel_size": 5, "dilation": 2, "groups": 4},
        {"bias": True},
    ],
)
def test_fuse_matches_eval_output(kw):
    torch.manual_seed(0)
    layer = randomize_bn(ConvNormAct(4, 8, **kw)).eval()
    x = torch.randn(2, 4, 11, 11)
    expected = layer(x)
    assert layer.fuse() is layer
    assert isinstance(layer.bn, nn.Identity) and layer.conv.bias is not None
    torch.testing.assert_close(layer(x), expected, atol=1e-4, rtol=1e-4)


def test_fuse_leaves_group_norm():
    layer = ConvNormAct(4, 8, norm_layer="gn", norm_kwargs={"num_groups": 2}).fuse()
    assert isinstance(layer.bn, nn.GroupNorm)


def test_channels_last_forward_backward():
    torch.manual_seed(0)
    layer = ConvNormAct(4, 8, (1, 4), stride=1)
    x = torch.randn(2, 4, 8, 8)
    expected = layer(x)
    xc = x.to(memory_format=torch.channels_last).requires_grad_()
    out = layer.to(memory_format=torch.channels_last)(xc)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected)
    out.square().mean().backward()
    assert xc.grad is not None
    assert all(p.grad is not None for p in layer.parameters())


def test_compiles_fullgraph_with_asymmetric_and_tf_padding():
    torch.manual_seed(0)
    net = nn.Sequential(
        ConvNormAct(3, 4, (1, 4)), ConvNormAct(4, 4, 3, stride=2, padding="tf_same")
    ).eval()
    x = torch.randn(2, 3, 9, 9)
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), net(x))
