"""ResNets against torchvision and timm: stages, parameters, checkpoints, fusion, speed paths."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from omegaconf import OmegaConf
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cvtasks.backbones import validate_backbone
from cvtasks.backbones.resnet import ResNet, resnet18, resnet50
from cvtasks.layers import fuse_batchnorm
from cvtasks.registry import BACKBONES
from tests.backbones.conftest import randomize_bn

ROOT = Path(__file__).parents[2]
NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
STAGE_CHANNELS = {"resnet18": (64, 128, 256, 512), "resnet50": (256, 512, 1024, 2048)}


def assert_same(actual, expected):
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


def test_registered_variants():
    assert BACKBONES.names("resnet*") == sorted([*NAMES, "resnet10"])


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_stages_follow_timm_feature_info(name):
    with torch.device("meta"):
        net, ref = BACKBONES.build(name), timm.create_model(name)
    assert net.feature_info == ref.feature_info  # act1 at 1/2, then layer1..layer4
    features = net.forward_features(torch.empty(1, 3, 224, 224, device="meta"))
    channels = (64, *STAGE_CHANNELS[name])
    sizes = (112, 56, 28, 14, 7)
    assert [tuple(f.shape[1:]) for f in features] == [(c, s, s) for c, s in zip(channels, sizes)]
    assert net.num_features == channels[-1]
    validate_backbone(net)


@pytest.mark.parametrize("name", NAMES)
def test_parameters_and_flops_equal_torchvision(name):
    with torch.device("meta"):
        ours, ref = BACKBONES.build(name, num_classes=1000), getattr(torchvision.models, name)()
    assert set(ours.state_dict()) == set(ref.state_dict())  # the identity key map
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    if name == "resnet50":
        assert sum(p.numel() for p in ours.parameters()) == 25_557_032
        x = torch.empty(1, 3, 224, 224, device="meta")
        flops = []
        for model in (ours, ref):
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                model(x)
            flops.append(counter.get_total_flops())
        assert flops[0] == flops[1]


def test_shortcut_is_identity_or_a_1x1_projection():
    # seed 001 Fig 6.14: identity when the shape is kept, else a 1x1 convolution
    net18, net50 = resnet18(), resnet50()
    assert net18.layer1[0].downsample is None and net18.layer2[1].downsample is None
    for block, (cin, cout, stride) in [
        (net18.layer2[0], (64, 128, 2)),
        (net50.layer1[0], (64, 256, 1)),  # a Bottleneck widens 4x already in layer1
        (net50.layer4[0], (1024, 2048, 2)),
    ]:
        conv, bn = block.downsample
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (
            cin,
            cout,
            (1, 1),
            (stride, stride),
        )
        assert isinstance(bn, nn.BatchNorm2d)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_checkpoint_gives_torchvision_logits(tmp_path, name):
    torch.manual_seed(0)
    ref = randomize_bn(getattr(torchvision.models, name)())
    torch.save(ref.state_dict(), tmp_path / "tv.pth")
    net = BACKBONES.build(name, num_classes=1000, pretrained=str(tmp_path / "tv.pth")).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_same(net(x), ref(x))


def test_timm_checkpoint_gives_timm_logits(tmp_path):
    torch.manual_seed(0)
    ref = randomize_bn(timm.create_model("resnet18", pretrained=False))
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    net = resnet18(num_classes=1000, pretrained=tmp_path / "timm.pth").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_same(net(x), ref(x))


@pytest.fixture(scope="module")
def tv18_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tv18") / "resnet18.pth"
    torch.save(randomize_bn(torchvision.models.resnet18()).state_dict(), path)
    return path


def test_other_num_classes_reinitializes_only_fc(tv18_path, caplog):
    state = torch.load(tv18_path, weights_only=True)
    with caplog.at_level(logging.INFO):
        net = resnet18(num_classes=10, pretrained=tv18_path)
    assert "fc.weight" in caplog.text and "num_classes differs" in caplog.text
    own = net.state_dict()
    assert own["fc.weight"].shape == (10, 512)
    assert all(torch.equal(own[k], v) for k, v in state.items() if not k.startswith("fc."))


def test_other_in_chans_adapts_only_the_stem_conv(tv18_path, caplog):
    state = torch.load(tv18_path, weights_only=True)
    with caplog.at_level(logging.WARNING):
        net = resnet18(in_chans=1, pretrained=tv18_path)
    assert "conv1" in caplog.text and "3 input channels, the model 1" in caplog.text
    torch.testing.assert_close(net.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    own = net.state_dict()
    loaded = [k for k in state if k != "conv1.weight" and not k.startswith("fc.")]
    assert all(torch.equal(own[k], state[k]) for k in loaded)
    assert net.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 512)


def test_shape_mismatch_elsewhere_names_the_parameter(tv18_path, tmp_path):
    state = torch.load(tv18_path, weights_only=True)
    state["layer3.0.conv2.weight"] = torch.zeros(256, 256, 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"layer3\.0\.conv2\.weight \(file \(256, 256, 1, 1\)"):
        resnet18(pretrained=tmp_path / "bad.pth")


def test_fuse_batchnorm_keeps_eval_outputs(tv18_path):
    net = resnet18(num_classes=1000, pretrained=tv18_path).eval()
    fused = fuse_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_same(fused(x), net(x))


def test_channels_last_forward_backward():
    torch.manual_seed(0)
    net = resnet18(num_classes=5)
    x = torch.randn(2, 3, 32, 32)
    expected = net.eval()(x)
    net = net.to(memory_format=torch.channels_last)
    xcl = x.contiguous(memory_format=torch.channels_last)
    assert_same(net(xcl), expected)
    assert net.forward_features(xcl)[2].is_contiguous(memory_format=torch.channels_last)
    net.train()(xcl).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_compile_fullgraph_equals_eager():
    torch.manual_seed(0)
    net = randomize_bn(resnet18(num_classes=10))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert_same(torch.compile(net, fullgraph=True)(x), net(x))


def test_drop_path_rises_linearly_and_is_off_in_eval():
    torch.manual_seed(0)
    net = resnet18(num_classes=4, drop_path_rate=0.2)
    blocks = [b for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for b in layer]
    rates = [getattr(b.drop_path, "p", 0.0) for b in blocks]
    assert rates == pytest.approx([0.2 * i / 7 for i in range(8)])
    plain = resnet18(num_classes=4)
    plain.load_state_dict(net.state_dict())  # same keys: drop_path has no parameters
    x = torch.randn(4, 3, 32, 32)
    assert_same(net.eval()(x), plain.eval()(x))
    net.train()
    assert not torch.equal(net(x), net(x))  # branches dropped at random per sample


def test_zero_init_last_starts_each_block_as_its_shortcut():
    net = resnet50(zero_init_last=True)
    assert all(
        torch.count_nonzero(layer[-1].bn3.weight) == 0
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4)
    )
    x = torch.rand(2, 256, 8, 8)  # non-negative, like the ReLU output feeding the block
    assert_same(net.layer1[1](x), x)
    assert torch.count_nonzero(resnet18().layer1[0].bn2.weight) == 64  # off by default


def test_bad_arguments_say_what_to_fix():
    with pytest.raises(ValueError, match="four block counts"):
        ResNet(block=nn.Identity, layers=(2, 2, 2))
    with pytest.raises(ValueError, match="drop_path_rate"):
        resnet18(drop_path_rate=1.0)
    with pytest.raises(TypeError, match="layers"):
        resnet18(layers=(1, 1, 1, 1))  # the depth is the variant's name


@pytest.mark.parametrize("name", NAMES)
def test_hydra_config_builds(compose_train, name):
    kwargs = OmegaConf.to_container(compose_train(f"backbone={name}").backbone)
    assert kwargs.pop("name") == name
    with torch.device("meta"):
        net = BACKBONES.build(name, num_classes=3, **kwargs)
    assert net.variant == name and net.in_chans == 3


@pytest.mark.slow
def test_train_py_trains_digits_with_resnet18(tmp_path):
    cmd = [
        sys.executable,
        "train.py",
        "backbone=resnet18",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "callbacks.progress_bar=null",
        "logger=none",
        f"hydra.run.dir={tmp_path}/run",
    ]
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ)
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert (tmp_path / "run" / "metrics.json").exists()
