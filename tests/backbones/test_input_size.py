"""Native input sizes: declared where a backbone is registered, read without building it."""

import pytest
import timm
import torch

from cvtasks.backbones.input_size import DEFAULT_INPUT_SIZE, input_size, native_input_size
from cvtasks.backbones.timm_adapter import TimmBackbone
from cvtasks.registry import BACKBONES

# The architectures' own input sizes: LeNet-5 32x32 (seed 003), AlexNet 224 (torchvision) and
# 227 (seed 003, CS231n notes), VGG/GoogLeNet/ResNet 224, EfficientNet's compound-scaled resolutions
# (Tan & Le 2019, Table 7 / seed 001 Fig 6.15).
EXPECTED = {
    "lenet5": 32,
    "alexnet": 224,
    "alexnet_seed": 227,
    "vgg11": 224,
    "vgg19_bn": 224,
    "googlenet": 224,
    "resnet18": 224,
    "resnet152": 224,
    **{
        f"efficientnet_b{b}": size
        for b, size in enumerate((224, 240, 260, 300, 380, 456, 528, 600))
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_family_declares_the_papers_input_size(name):
    assert native_input_size(name) == EXPECTED[name]


@pytest.mark.parametrize("name", BACKBONES.names())
def test_declared_size_is_the_built_networks_default_input_size(name):
    with torch.device("meta"):  # shapes only: no weights are allocated
        net = BACKBONES.build(name, num_classes=0)
    assert native_input_size(name) == net.default_input_size


@pytest.mark.parametrize(
    "model", ["resnet18", "resnet10t", "efficientnet_b3", "vit_base_patch16_384"]
)
def test_timm_names_read_timms_pretrained_cfg(model):
    _, height, width = timm.get_pretrained_cfg(model).input_size
    assert native_input_size(f"timm/{model}") == height == width
    assert TimmBackbone(model).default_input_size == width


def test_a_non_square_timm_model_gives_height_and_width():
    _, height, width = timm.get_pretrained_cfg("vit_base_patch16_sapiens2").input_size
    assert height != width
    assert native_input_size("timm/vit_base_patch16_sapiens2") == [height, width]


def test_a_builder_that_declares_nothing_gets_the_default():
    assert not hasattr(BACKBONES.get("resnet18"), "default_input_size")
    assert native_input_size("resnet18") == DEFAULT_INPUT_SIZE == 224


def test_declaring_sets_the_attribute_and_returns_the_builder():
    def builder(**kwargs):
        return kwargs

    assert input_size(64)(builder) is builder
    assert builder.default_input_size == 64


@pytest.mark.parametrize("bad", [0, -32, 32.0, True, "32"])
def test_declaring_a_bad_size_fails(bad):
    with pytest.raises(ValueError, match="input_size must be a positive int"):
        input_size(bad)


@pytest.mark.parametrize(
    ("name", "multiple", "expected"),
    [
        ("lenet5", 32, 32),
        ("efficientnet_b1", 32, 256),  # 240 / 32 = 7.5: halves round up
        ("efficientnet_b3", 32, 288),  # 300 / 32 = 9.4
        ("efficientnet_b4", 32, 384),
        ("timm/resnet10t", 32, 192),  # 176 / 32 = 5.5
        ("alexnet_seed", 1, 227),
        ("lenet5", 64, 64),  # never below one multiple
    ],
)
def test_rounding_to_a_multiple(name, multiple, expected):
    assert native_input_size(name, multiple) == expected


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_a_bad_multiple_fails(bad):
    with pytest.raises(ValueError, match="multiple must be a positive int"):
        native_input_size("lenet5", bad)


def test_unknown_names_fail_with_the_registrys_suggestions():
    with pytest.raises(KeyError, match=r"Unknown backbone 'lenet'.*Did you mean: lenet5"):
        native_input_size("lenet")
    with pytest.raises(
        KeyError, match=r"Unknown timm model .*resnet1x.*Did you mean: timm/resnet18"
    ):
        native_input_size("timm/resnet1x")
