"""LeNet-5 against the seed's numbers (seed 003): shapes, parameter count, init, head, weights."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cvtasks.backbones import validate_backbone
from cvtasks.backbones.lenet import LeNet5, lenet5
from cvtasks.registry import BACKBONES


def seed_param_count(in_chans: int, num_classes: int) -> int:
    # seed 003's LeNet Q&A: C1 6 kernels in x 5x5, C3 16 kernels 6x5x5, C5 120, F6 84
    count = 6 * (in_chans * 25 + 1) + 16 * (6 * 25 + 1) + 120 * (16 * 25 + 1)
    if num_classes:
        count += 84 * (120 + 1) + num_classes * (84 + 1)
    return count


def test_stage_shapes_on_32x32():
    net = BACKBONES.build("lenet5", in_chans=3)
    x = torch.randn(1, 3, 32, 32)
    assert net.c1(x).shape == (1, 6, 28, 28)  # C1 inside S2
    shapes = [tuple(f.shape) for f in net.forward_features(x)]
    assert shapes == [(1, 6, 14, 14), (1, 16, 5, 5), (1, 120, 1, 1)]
    assert [i["num_chs"] for i in net.feature_info] == [6, 16, 120]
    assert [i["reduction"] for i in net.feature_info] == [2, 4, 4]
    assert net.num_features == 120
    validate_backbone(net, x)


@pytest.mark.parametrize(("in_chans", "num_classes"), [(1, 10), (3, 10), (3, 0)])
def test_parameter_count_matches_the_seed(in_chans, num_classes):
    net = LeNet5(in_chans=in_chans, num_classes=num_classes)
    assert sum(p.numel() for p in net.parameters()) == seed_param_count(in_chans, num_classes)
    if (in_chans, num_classes) == (1, 10):
        assert seed_param_count(1, 10) == 61_706


def test_theano_fan_in_fan_out_init():
    torch.manual_seed(0)
    net = LeNet5(in_chans=3, num_classes=10)
    # seed 003, Theano tutorial: fan_in = in·kh·kw, fan_out = out·kh·kw // pool area,
    # b = √(6/(in+out))
    expected = {
        "c1": (3 * 25, 6 * 25 // 4),
        "c3": (6 * 25, 16 * 25 // 4),
        "c5": (16 * 25, 120 * 25),
        "f6": (120, 84),
        "out": (84, 10),
    }
    for name, (fan_in, fan_out) in expected.items():
        layer = getattr(net, name)
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        largest = layer.weight.abs().max().item()
        assert largest <= bound, name
        assert largest > 0.9 * bound, name  # uniform over the whole range, not a narrower one
        assert torch.count_nonzero(layer.bias) == 0, name  # the Theano tutorial


def test_forward_backward_gives_every_parameter_a_gradient():
    net = LeNet5(in_chans=1, num_classes=10, drop_rate=0.1)
    net(torch.randn(4, 1, 32, 32)).logsumexp(dim=1).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_classifier_is_the_seeds_full_network_on_32x32():
    net = LeNet5(in_chans=1, num_classes=10).eval()
    x = torch.randn(3, 1, 32, 32)
    c5 = net.forward_features(x)[-1]
    expected = net.out(torch.tanh(net.f6(c5.flatten(1))))  # C5 → flatten → F6 → tanh → output
    torch.testing.assert_close(net(x), expected)


def test_max_pool_before_or_after_tanh_is_the_same():
    # The Theano tutorial computes tanh(pool(conv(x)) + b) (seed 003); we pool after tanh.
    net = LeNet5(in_chans=1)
    with torch.no_grad():
        net.c1.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 1, 32, 32)
    conv = F.conv2d(x, net.c1.weight)
    theano = torch.tanh(F.max_pool2d(conv, 2) + net.c1.bias.view(1, -1, 1, 1))
    torch.testing.assert_close(net.forward_features(x)[0], theano)


def test_act_and_pool_options():
    net = LeNet5(act_layer="relu", pool="avg")
    assert isinstance(net.act1, nn.ReLU) and isinstance(net.s2, nn.AvgPool2d)
    net = LeNet5(act_layer=nn.ReLU)
    assert isinstance(net.act5, nn.ReLU) and isinstance(net.s4, nn.MaxPool2d)
    default = LeNet5()
    assert isinstance(default.act1, nn.Tanh) and isinstance(default.s2, nn.MaxPool2d)
    with pytest.raises(ValueError, match="pool must be one of"):
        LeNet5(pool="median")


def test_larger_inputs_average_the_class_scores_over_c5_positions():
    net = LeNet5(num_classes=4).eval()
    x = torch.randn(2, 3, 48, 40)
    c5 = net.forward_features(x)[-1]
    assert c5.shape == (2, 120, 5, 3)
    # seed 003, CS231n FC→CONV conversion: run the FC layers at every position, then average the
    # scores
    scores = [
        net(x[:, :, 4 * i : 4 * i + 32, 4 * j : 4 * j + 32])
        for i in range(c5.shape[2])
        for j in range(c5.shape[3])
    ]
    torch.testing.assert_close(net(x), torch.stack(scores).mean(0))
    assert LeNet5()(x).shape == (2, 120)


def test_inputs_smaller_than_32_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"at least 32x32.*got \(28, 28\)"):
        LeNet5(in_chans=1)(torch.randn(1, 1, 28, 28))


class TutorialLeNet(nn.Module):
    """The common PyTorch LeNet-5 (C5 as ``fc1 = Linear(16·5·5, 120)``), written independently."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(torch.tanh(self.conv1(x)), 2)
        x = F.max_pool2d(torch.tanh(self.conv2(x)), 2)
        x = torch.tanh(self.fc1(x.flatten(1)))
        return self.fc3(torch.tanh(self.fc2(x)))


def test_pretrained_pytorch_lenet_layout_loads_via_fc_to_conv(tmp_path):
    ref = TutorialLeNet().eval()
    torch.save(ref.state_dict(), tmp_path / "lenet.pth")
    path = str(tmp_path / "lenet.pth")
    net = BACKBONES.build("lenet5", in_chans=1, num_classes=10, pretrained=path)
    x = torch.randn(4, 1, 32, 32)
    torch.testing.assert_close(net.eval()(x), ref(x))

    conv_layout = {
        k.replace("fc1", "conv3").replace("fc2", "fc1").replace("fc3", "fc2"): v
        for k, v in ref.state_dict().items()
    }
    conv_layout["conv3.weight"] = conv_layout["conv3.weight"].reshape(120, 16, 5, 5)
    torch.save(conv_layout, tmp_path / "lenet_conv.pth")
    net = lenet5(in_chans=1, num_classes=10, pretrained=tmp_path / "lenet_conv.pth")
    torch.testing.assert_close(net.eval()(x), ref(x))


def test_pretrained_own_checkpoint_with_other_num_classes_keeps_f6(tmp_path):
    src = LeNet5(in_chans=1, num_classes=10)
    torch.save(src.state_dict(), tmp_path / "own.pth")
    dst = lenet5(in_chans=1, num_classes=3, pretrained=tmp_path / "own.pth")
    torch.testing.assert_close(dst.f6.weight, src.f6.weight)  # same shape: loaded
    torch.testing.assert_close(dst.c5.weight, src.c5.weight)
    features = lenet5(in_chans=1, pretrained=tmp_path / "own.pth")  # no head at all
    torch.testing.assert_close(features.c1.weight, src.c1.weight)
    with pytest.raises(ValueError, match=r"c1\.weight \(file \(6, 1, 5, 5\), model \(6, 3, 5, 5\)"):
        lenet5(in_chans=3, pretrained=tmp_path / "own.pth")
