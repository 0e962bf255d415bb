"""build_with_weights: how every family's builder constructs a variant and loads its weights."""

import logging

import pytest
import torch

from cvtasks.backbones import build_with_weights
from cvtasks.backbones.resnet import ResNet
from cvtasks.layers import BasicBlock
from cvtasks.registry import BACKBONES


def tiny(**kwargs):
    return ResNet(BasicBlock, (1, 1, 1, 1), channels=(8, 8, 16, 16), stem_width=8, **kwargs)


def _saved_tiny(path, in_chans=3, **kwargs):
    """A tiny ResNet with non-trivial BN statistics, its weights saved at ``path``."""
    torch.manual_seed(0)
    model = tiny(in_chans=in_chans, num_classes=5, **kwargs)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    torch.save(model.state_dict(), path)
    return model.eval()


def test_sets_the_variant_and_keeps_the_fresh_weights_without_a_file():
    torch.manual_seed(0)
    model = build_with_weights(tiny, "tiny", num_classes=3)
    torch.manual_seed(0)
    assert model.variant == "tiny" and "variant=tiny" in repr(model)
    for (name, a), b in zip(model.state_dict().items(), tiny(num_classes=3).state_dict().values()):
        assert torch.equal(a, b), name


def test_loads_pretrained_through_the_key_map(tmp_path):
    src = tiny(num_classes=3)
    torch.save({f"encoder.{k}": v for k, v in src.state_dict().items()}, tmp_path / "w.pth")
    model = build_with_weights(
        tiny, "tiny", pretrained=tmp_path / "w.pth", key_map={"encoder.": ""}, num_classes=3
    )
    for (name, a), b in zip(src.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="unexpected keys"):
        build_with_weights(tiny, "tiny", pretrained=tmp_path / "w.pth", num_classes=3)


@pytest.mark.parametrize("name", ["lenet5", "googlenet", "resnet18", "efficientnet_b0"])
def test_every_family_builder_records_its_registered_name(name):
    with torch.device("meta"):
        assert BACKBONES.build(name).variant == name


@pytest.mark.parametrize(
    ("file_chans", "in_chans", "adapt"),
    [
        (3, 1, lambda w: w.sum(1, keepdim=True)),  # timm: sum over the input channels
        (3, 4, lambda w: torch.cat([w, w[:, :1]], 1) * 3 / 4),  # RGBR, scaled by 3/4
        (1, 3, lambda w: torch.cat([w, w, w], 1) / 3),  # a gray checkpoint for RGB input
    ],
)
def test_a_stem_for_other_channels_is_adapted_as_timm_does(
    tmp_path, caplog, file_chans, in_chans, adapt
):
    src = _saved_tiny(tmp_path / "w.pth", in_chans=file_chans)
    with caplog.at_level(logging.WARNING, logger="cvtasks.backbones.weights"):
        model = build_with_weights(
            tiny, "tiny", pretrained=tmp_path / "w.pth", in_chans=in_chans, num_classes=5
        )
    assert f"adapted from {file_chans} to {in_chans} channels" in caplog.text
    assert model.conv1.weight.shape == (8, in_chans, 7, 7)
    torch.testing.assert_close(model.conv1.weight, adapt(src.conv1.weight), rtol=0, atol=1e-7)
    for (name, a), b in zip(src.state_dict().items(), model.state_dict().values()):
        if name != "conv1.weight":
            assert torch.equal(a, b), name


@pytest.mark.parametrize("stem_type", ["", "deep"])
def test_a_gray_model_from_rgb_weights_gives_the_logits_of_its_rgb_copy(tmp_path, stem_type):
    rgb = _saved_tiny(tmp_path / "w.pth", stem_type=stem_type)
    gray = build_with_weights(
        tiny,
        "tiny",
        pretrained=tmp_path / "w.pth",
        in_chans=1,
        num_classes=5,
        stem_type=stem_type,
    ).eval()
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = rgb(x.repeat(1, 3, 1, 1)), gray(x)
    assert expected.abs().max() > 0.1  # not a comparison between near-zeros
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
