"""AlexNet against torchvision and seed 003: layout, parameters, checkpoints, channels_last."""

import logging

import pytest
import torch
import torchvision
from torch import nn

from cvtasks.backbones import validate_backbone
from cvtasks.backbones.alexnet import AlexNet, _alexnet_checkpoint_filter, alexnet
from cvtasks.registry import BACKBONES


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_meta(name: str, **kwargs) -> AlexNet:
    with torch.device("meta"):
        return BACKBONES.build(name, **kwargs)


@pytest.fixture(scope="module")
def torchvision_alexnet(tmp_path_factory):
    """torchvision's AlexNet with random weights, in eval mode, and its saved state dict."""
    torch.manual_seed(0)
    ref = torchvision.models.alexnet().eval()
    path = tmp_path_factory.mktemp("alexnet") / "alexnet.pth"
    torch.save(ref.state_dict(), path)
    return ref, str(path)


def test_layout_and_parameters_are_torchvisions():
    net = build_meta("alexnet", num_classes=1000)
    with torch.device("meta"):
        ref = torchvision.models.alexnet()
    assert count(net) == count(ref) == 61_100_840
    renamed = _alexnet_checkpoint_filter(ref.state_dict(), net)
    assert {k: v.shape for k, v in renamed.items()} == {
        k: v.shape for k, v in net.state_dict().items()
    }


def test_stages_at_224():
    net = build_meta("alexnet")
    x = torch.empty(1, 3, 224, 224, device="meta")
    # conv1 pads by 2, so 224 gives the seed's 55x55 (seed 003, CS231n notes): floor(217 / 4) + 1
    assert net.stages[0].conv1(x).shape == (1, 64, 55, 55)
    shapes = [tuple(f.shape) for f in net.forward_features(x)]
    assert shapes == [(1, 64, 27, 27), (1, 192, 13, 13), (1, 256, 6, 6)]
    assert [i["reduction"] for i in net.feature_info] == [8, 16, 32]
    assert net.num_features == 256 and net.default_input_size == 224 and net.min_size == 63


def test_seed_variant_has_the_seeds_numbers():
    net = build_meta("alexnet_seed", num_classes=1000)
    conv1 = net.stages[0].conv1
    x = torch.empty(1, 3, 227, 227, device="meta")
    assert conv1(x).shape == (1, 96, 55, 55)  # (227 - 11) / 4 + 1 = 55, K = 96 (CS231n)
    assert count(conv1) == 96 * 11 * 11 * 3 + 96 == 34_944  # CS231n, "Parameter Sharing"
    assert [m.out_features for m in net.head if isinstance(m, nn.Linear)] == [4096, 4096, 1000]
    assert count(net) == 62_378_344  # "AlexNet with 60M" (CS231n, "Case studies")
    shapes = [tuple(f.shape) for f in net.forward_features(x)]
    assert shapes == [(1, 96, 27, 27), (1, 256, 13, 13), (1, 256, 6, 6)]
    assert net.default_input_size == 227


def test_seed_variant_runs_at_64_thanks_to_ceil_pooling():
    torch.manual_seed(0)
    net = BACKBONES.build("alexnet_seed")
    x = torch.randn(1, 3, 64, 64)
    validate_backbone(net, x)
    assert [f.shape[-1] for f in net.forward_features(x)] == [7, 3, 1]


def test_pretrained_torchvision_checkpoint_gives_torchvisions_logits(torchvision_alexnet):
    ref, path = torchvision_alexnet
    net = BACKBONES.build("alexnet", num_classes=1000, pretrained=path).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = ref(x)
        torch.testing.assert_close(net(x), expected, atol=1e-4, rtol=0)
        torch.testing.assert_close(net.forward_features(x)[-1], ref.features(x))
    assert expected.abs().max() > 1e-3  # the comparison is not between two near-zero vectors


def test_other_num_classes_reinitialises_only_the_last_layer(torchvision_alexnet, caplog):
    ref, path = torchvision_alexnet
    with caplog.at_level(logging.INFO, logger="cvtasks.backbones.weights"):
        net = BACKBONES.build("alexnet", num_classes=10, pretrained=path)
    assert "skipped classifier weights ['head.fc.weight', 'head.fc.bias']" in caplog.text
    torch.testing.assert_close(net.head.fc1.weight, ref.classifier[1].weight)
    torch.testing.assert_close(net.head.fc2.bias, ref.classifier[4].bias)
    assert net.head.fc.weight.shape == (10, 4096)


def test_other_in_chans_adapts_only_the_stem(torchvision_alexnet, caplog):
    ref, path = torchvision_alexnet
    with caplog.at_level(logging.WARNING, logger="cvtasks.backbones.weights"):
        net = BACKBONES.build("alexnet", in_chans=1, num_classes=1000, pretrained=path)
    assert "3 input channels, the model 1" in caplog.text
    torch.testing.assert_close(
        net.stages[0].conv1.conv.weight, ref.features[0].weight.sum(1, keepdim=True)
    )
    torch.testing.assert_close(net.stages[0].conv1.conv.bias, ref.features[0].bias)
    torch.testing.assert_close(net.stages[1].conv2.conv.weight, ref.features[3].weight)
    torch.testing.assert_close(net.head.fc.weight, ref.classifier[6].weight)


def test_features_only_model_takes_the_checkpoint_without_a_head(torchvision_alexnet):
    ref, path = torchvision_alexnet
    net = alexnet(pretrained=path).eval()
    assert not any(k.startswith("head.") for k in net.state_dict())
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref.features(x).mean((2, 3)))


def test_seed_variant_refuses_torchvision_weights(torchvision_alexnet):
    _, path = torchvision_alexnet
    with pytest.raises(
        ValueError, match=r"stages\.0\.conv1\.conv\.weight \(file \(64, 3, 11, 11\)"
    ):
        BACKBONES.build("alexnet_seed", pretrained=path)


def test_stem_filter_leaves_own_layout_alone():
    net = build_meta("alexnet", in_chans=4)
    state = {k: v for k, v in net.state_dict().items()}
    assert _alexnet_checkpoint_filter(state, net) == state
    assert AlexNet.stem_weight in state


def test_channels_last_forward_backward():
    # Without classes: the FC layers see a flattened vector whatever the memory format.
    torch.manual_seed(0)
    net = BACKBONES.build("alexnet")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = net.eval()(x)
    net = net.train().to(memory_format=torch.channels_last)
    x = x.to(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), expected, atol=1e-4, rtol=1e-4)
    net.train()(x).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_too_small_inputs_are_refused_with_the_fix():
    net = AlexNet()
    with pytest.raises(ValueError, match=r"at least 63x63.*got \(32, 32\).*224x224"):
        net(torch.randn(1, 3, 32, 32))
    net(torch.randn(1, 3, 63, 63))
