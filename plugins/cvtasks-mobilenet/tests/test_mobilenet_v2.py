"""MobileNetV2 against torchvision's: parameters, logits on the same weights, contract, compile.

Run from the repository root: ``python -m pytest plugins/cvtasks-mobilenet/tests``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from torch import nn

from cvtasks.backbones import validate_backbone
from cvtasks.registry import BACKBONES

PLUGIN = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PLUGIN))  # the source tree, whether or not the package is installed
from cvtasks_mobilenet import MobileNetV2, mobilenet_v2  # noqa: E402 - registers "mobilenet_v2"


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def torchvision_mobilenet_v2(**kwargs) -> nn.Module:
    """torchvision's model with BN statistics set away from (0, 1), so that a misplaced
    running mean or variance changes the logits."""
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(**kwargs)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    return model.eval()


@pytest.mark.parametrize("width_mult", [1.0, 0.5, 1.4])
def test_parameter_count_equals_torchvision(width_mult):
    with torch.device("meta"):
        theirs = torchvision.models.mobilenet_v2(width_mult=width_mult)
        ours = BACKBONES.build("mobilenet_v2", width_mult=width_mult, num_classes=1000)
    assert param_count(ours) == param_count(theirs)
    if width_mult == 1.0:
        assert param_count(ours) == 3_504_872


def test_logits_equal_torchvision_on_loaded_weights(tmp_path):
    theirs = torchvision_mobilenet_v2()
    torch.save(theirs.state_dict(), tmp_path / "mobilenet_v2.pth")
    ours = mobilenet_v2(num_classes=1000, pretrained=tmp_path / "mobilenet_v2.pth").eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert expected.abs().max() > 1e-2  # the comparison below is not between near-zeros
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_checkpoint_for_other_classes_and_channels_loads_the_rest(tmp_path):
    theirs = torchvision_mobilenet_v2()
    torch.save(theirs.state_dict(), tmp_path / "mobilenet_v2.pth")
    gray = mobilenet_v2(in_chans=1, num_classes=5, pretrained=tmp_path / "mobilenet_v2.pth")
    assert gray.fc.out_features == 5 and gray.stem.conv.in_channels == 1
    torch.testing.assert_close(
        gray.blocks[6][0].block[1].conv.weight, theirs.features[17].conv[1][0].weight
    )
    torch.testing.assert_close(gray.conv_head.bn.running_var, theirs.features[18][1].running_var)
    trunk = mobilenet_v2(num_classes=0, pretrained=tmp_path / "mobilenet_v2.pth")
    assert isinstance(trunk.conv_head, nn.Identity) and isinstance(trunk.fc, nn.Identity)
    torch.testing.assert_close(trunk.stem.conv.weight, theirs.features[0][0].weight)


def test_contract_features_and_gradients():
    net = BACKBONES.build("mobilenet_v2", num_classes=3, width_mult=0.35)
    x = torch.randn(2, 3, 64, 64)
    validate_backbone(net, x)
    assert [(i["num_chs"], i["reduction"]) for i in net.feature_info] == [
        (8, 2),
        (8, 4),
        (16, 8),
        (32, 16),
        (112, 32),
    ]
    shapes = [tuple(f.shape[-2:]) for f in net.forward_features(x)]
    assert shapes == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    assert net.num_features == 112 and net.head_chs == 1280
    net(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    pooled = BACKBONES.build("mobilenet_v2", num_classes=0, width_mult=0.35)(x)
    assert pooled.shape == (2, 112)


def test_linear_bottleneck_and_inverted_residual():
    net = MobileNetV2()
    first, repeat = net.blocks[1][0], net.blocks[1][1]
    assert not first.has_skip and repeat.has_skip  # the shortcut joins narrow ends, stride 1
    assert isinstance(repeat.block[-1].act, nn.Identity)  # no activation on the projection
    assert isinstance(repeat.block[0].act, nn.ReLU6)
    depthwise = repeat.block[1].conv
    assert depthwise.groups == depthwise.in_channels == 144  # 24 * t=6, one filter per channel


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="width_mult"):
        MobileNetV2(width_mult=0)
    with pytest.raises(ValueError, match="num_classes"):
        MobileNetV2(num_classes=-1)
    with pytest.raises(ValueError, match=r"drop_path_rate must be in \[0, 1\), got 1.0"):
        MobileNetV2(drop_path_rate=1.0)


def test_drop_path_rises_linearly_and_drops_only_in_training():
    from cvtasks.layers import DropPath, MBConv

    torch.manual_seed(0)
    dropping = MobileNetV2(width_mult=0.35, drop_path_rate=0.5)
    blocks = [m for m in dropping.modules() if isinstance(m, MBConv)]
    rates = [b.drop_path.p for b in blocks]
    assert rates == pytest.approx([0.5 * i / 17 for i in range(17)])
    assert all(isinstance(b.drop_path, DropPath) for b in blocks)
    plain = MobileNetV2(width_mult=0.35)
    plain.load_state_dict(dropping.state_dict())  # drop path holds no parameters
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(
            dropping.eval().forward_features(x)[-1], plain.eval().forward_features(x)[-1]
        )
        dropping.train(), plain.train()
        for module in [*dropping.modules(), *plain.modules()]:  # only drop path stays random
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        reference = plain.forward_features(x)[-1]
        torch.manual_seed(1)
        dropped = dropping.forward_features(x)[-1]
    assert not torch.allclose(dropped, reference)


def test_fullgraph_compile_capture():
    net = MobileNetV2(num_classes=4, width_mult=0.35).train()
    compiled = torch.compile(net, fullgraph=True, backend="eager")
    x = torch.randn(2, 3, 32, 32)
    out = compiled(x)  # a graph break would raise with fullgraph=True
    assert out.shape == (2, 4)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x))


def test_shipped_config_builds_the_backbone():
    path = PLUGIN / "cvtasks_mobilenet" / "conf" / "backbone" / "mobilenet_v2.yaml"
    cfg = yaml.safe_load(path.read_text())
    assert cfg["name"] == "mobilenet_v2" and cfg["pretrained"] is None
    with torch.device("meta"):
        net = BACKBONES.build(cfg.pop("name"), num_classes=10, **cfg)
    assert net.num_features == 320 and net.drop_rate == cfg["drop_rate"]


def test_pyproject_declares_entry_point_and_package_data():
    import tomllib

    meta = tomllib.loads((PLUGIN / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["cvtasks.plugins"] == {"mobilenet": "cvtasks_mobilenet"}
    assert meta["tool"]["setuptools"]["package-data"]["cvtasks_mobilenet"] == ["conf/**/*.yaml"]
