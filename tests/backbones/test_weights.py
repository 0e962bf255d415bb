"""build_with_weights: how every family's builder constructs a variant and loads its weights."""

import pytest
import torch

from cvtasks.backbones import build_with_weights
from cvtasks.backbones.resnet import ResNet
from cvtasks.layers import BasicBlock
from cvtasks.registry import BACKBONES


def tiny(**kwargs):
    return ResNet(BasicBlock, (1, 1, 1, 1), channels=(8, 8, 16, 16), stem_width=8, **kwargs)


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
