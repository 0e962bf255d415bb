"""VGG against the seed's Table 6.1 and torchvision: parameters, stages, checkpoints, fusion, speed.

The 130-145M-parameter models are built on the meta device wherever only shapes, counts and keys
matter; the numeric tests use VGG-11 at batch 1.
"""

import logging

import pytest
import torch
import torchvision
from torch import nn

from cvtasks.backbones import LoadedKeys, load_pretrained, validate_backbone
from cvtasks.backbones.vgg import VGG, _vgg_checkpoint_filter
from cvtasks.layers import fuse_batchnorm
from cvtasks.registry import BACKBONES
from tests.backbones.conftest import randomize_bn

NAMES = ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
# seed 001 Table 6.1: learned parameters of VGG-19's 19 trainable layers, in order
TABLE_6_1 = [
    *(1_792, 36_928, 73_856, 147_584, 295_168, 590_080, 590_080, 590_080, 1_180_160),
    *[2_359_808] * 7,
    *(102_764_544, 16_781_312, 4_097_000),
]
TABLE_6_1_POOLED = [(64, 112, 112), (128, 56, 56), (256, 28, 28), (512, 14, 14), (512, 7, 7)]


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_meta(name: str, **kwargs) -> VGG:
    with torch.device("meta"):
        return BACKBONES.build(name, **kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_parameters_and_keys_are_torchvisions(name):
    net = build_meta(name, num_classes=1000)
    with torch.device("meta"):
        ref = getattr(torchvision.models, name)()
    assert count(net) == count(ref)
    renamed = _vgg_checkpoint_filter(ref.state_dict(), net)
    assert {k: v.shape for k, v in renamed.items()} == {
        k: v.shape for k, v in net.state_dict().items()
    }


def test_vgg19_is_the_seeds_table_6_1():
    net = build_meta("vgg19", num_classes=1000)
    trainable = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(trainable) + len(pools) == 24 and len(trainable) == 19  # seed 001 §6.4
    assert [count(m) for m in trainable] == TABLE_6_1
    assert count(net) == sum(TABLE_6_1) == 143_667_240
    features = net.forward_features(torch.empty(1, 3, 224, 224, device="meta"))
    assert [tuple(f.shape[1:]) for f in features] == TABLE_6_1_POOLED
    assert [i["reduction"] for i in net.feature_info] == [2, 4, 8, 16, 32]
    assert net.head.fc1.in_features == 512 * 7 * 7 == 25_088  # the flattened layer 21


def test_stages_and_features_only_forward():
    torch.manual_seed(0)
    net = BACKBONES.build("vgg11").eval()
    x = torch.randn(2, 3, 64, 64)
    validate_backbone(net, x)
    features = net.forward_features(x)
    assert [tuple(f.shape[1:]) for f in features] == [
        (64, 32, 32),
        (128, 16, 16),
        (256, 8, 8),
        (512, 4, 4),
        (512, 2, 2),
    ]
    assert not any(k.startswith("head.") for k in net.state_dict())  # no FC layers built
    torch.testing.assert_close(net(x), features[-1].mean((2, 3)))


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """``loaded(name)``: torchvision's ``name`` with random weights (and random BatchNorm
    statistics) in eval mode, and our model built from its saved state dict with ``pretrained``.

    Built once per name: each VGG-11 takes seconds to initialise, save and load.
    """
    cache = {}

    def get(name: str) -> tuple[nn.Module, VGG]:
        if name not in cache:
            torch.manual_seed(0)
            ref = randomize_bn(getattr(torchvision.models, name)())
            path = tmp_path_factory.mktemp(name) / f"{name}.pth"
            torch.save(ref.state_dict(), path)
            cache[name] = ref, BACKBONES.build(name, num_classes=1000, pretrained=str(path)).eval()
        return cache[name]

    return get


@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn"])
def test_pretrained_torchvision_checkpoint_gives_torchvisions_logits(name, loaded):
    ref, net = loaded(name)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = ref(x)
        torch.testing.assert_close(net(x), expected, atol=1e-4, rtol=0)
        torch.testing.assert_close(net.forward_features(x)[-1], ref.features(x))
    assert expected.abs().max() > 1e-3  # the comparison is not between two near-zero vectors


@pytest.fixture
def vgg16_bn_checkpoint(tmp_path):
    """torchvision's vgg16_bn state dict on the meta device: keys and shapes, no data."""
    with torch.device("meta"):
        ref = torchvision.models.vgg16_bn()
    path = tmp_path / "vgg16_bn.pth"
    torch.save(ref.state_dict(), path)
    return str(path)


def test_other_num_classes_skips_only_the_last_layer(vgg16_bn_checkpoint, caplog):
    net = build_meta("vgg16_bn", num_classes=10)
    with caplog.at_level(logging.INFO, logger="cvtasks.backbones.weights"):
        keys = load_pretrained(net, vgg16_bn_checkpoint, key_map=_vgg_checkpoint_filter)
    assert keys == LoadedKeys([], [], ["head.fc.weight", "head.fc.bias"])
    assert "skipped classifier weights" in caplog.text
    features_only = build_meta("vgg16_bn")
    keys = load_pretrained(features_only, vgg16_bn_checkpoint, key_map=_vgg_checkpoint_filter)
    assert keys.missing == keys.unexpected == [] and len(keys.skipped_classifier) == 6


def test_other_in_chans_adapts_the_stem(vgg16_bn_checkpoint, caplog):
    net = build_meta("vgg16_bn", in_chans=1, num_classes=1000)
    with caplog.at_level(logging.WARNING, logger="cvtasks.backbones.weights"):
        keys = load_pretrained(net, vgg16_bn_checkpoint, key_map=_vgg_checkpoint_filter)
    assert keys == LoadedKeys([], [], [])
    assert "3 input channels, the model 1" in caplog.text
    assert "adapted from 3 to 1 channels" in caplog.text
    with torch.device("meta"):
        state = torchvision.models.vgg16_bn().state_dict()
    renamed = _vgg_checkpoint_filter(state, net)
    assert renamed[VGG.stem_weight].shape == (64, 3, 3, 3)  # the loader adapts it
    assert renamed["stages.0.0.bn.running_var"] is state["features.1.running_var"]


def test_a_plain_checkpoint_does_not_fit_the_bn_form(tmp_path):
    with torch.device("meta"):
        torch.save(torchvision.models.vgg11().state_dict(), tmp_path / "vgg11.pth")
    with pytest.raises(ValueError, match=r"32 missing keys, e\.g\. stages\.0\.0\.bn\.weight"):
        build_meta("vgg11_bn", pretrained=str(tmp_path / "vgg11.pth"))
    with torch.device("meta"):
        torch.save(torchvision.models.vgg11_bn().state_dict(), tmp_path / "vgg11_bn.pth")
    with pytest.raises(ValueError, match=r"unexpected keys, e\.g\. stages\.0\.0\.bn\.weight"):
        build_meta("vgg11", pretrained=str(tmp_path / "vgg11_bn.pth"))


def test_fuse_batchnorm_keeps_eval_outputs(loaded):
    _, net = loaded("vgg11_bn")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        fused = fuse_batchnorm(net)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
        torch.testing.assert_close(fused(x), net(x), atol=1e-4, rtol=0)
        torch.testing.assert_close(fused.forward_features(x)[-1], net.forward_features(x)[-1])


def test_compile_fullgraph_equals_eager(loaded):
    _, net = loaded("vgg11")  # the cheapest variant, already built
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(net, fullgraph=True)(x), net(x))


@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn"])
def test_channels_last_forward_backward(name):
    # Without classes: the FC layers see a flattened vector whatever the memory format.
    torch.manual_seed(0)
    net = randomize_bn(BACKBONES.build(name))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = net(x)
    net = net.to(memory_format=torch.channels_last)
    x = x.to(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected, atol=1e-4, rtol=1e-4)
    net.train()(x).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_bad_inputs_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"at least 32x32.*got \(28, 28\)"):
        BACKBONES.build("vgg11")(torch.randn(1, 3, 28, 28))
    with pytest.raises(ValueError, match="each closed by 'M'"):
        VGG([64, "M", 128])
