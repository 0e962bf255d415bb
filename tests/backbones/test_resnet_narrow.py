"""Narrow and shallow ResNets (stage widths, stem, depth, out_indices) against timm's.

The recipes ``conf/backbone/resnet10_tiny.yaml`` and ``resnet18_narrow.yaml`` build cvtasks'
:class:`~cvtasks.backbones.resnet.ResNet` as ``timm_resnet_tiny.yaml`` and
``timm_resnet18_narrow.yaml`` build timm's: the same parameters, stages and initialisation and,
with timm's weights loaded key for key, the same feature maps.
"""

from pathlib import Path

import pytest
import timm
import torch
import yaml

from cvtasks.backbones import validate_backbone
from cvtasks.backbones.resnet import resnet10, resnet18
from cvtasks.registry import BACKBONES
from tests.backbones.conftest import randomize_bn

CONF = Path(__file__).parents[2] / "conf" / "backbone"
RECIPES = {"resnet10_tiny": "timm_resnet_tiny", "resnet18_narrow": "timm_resnet18_narrow"}
CONTRACT = ("name", "in_chans", "drop_rate", "pretrained")


def recipe(name: str) -> dict:
    """The recipe's keywords, ``in_chans: auto`` (the data's channels) as RGB data makes it."""
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    assert cfg["in_chans"] == "auto"
    return {**cfg, "in_chans": 3}


def build_pair(ours_name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Our backbone from its recipe and timm's ``features_only`` model from the timm recipe."""
    ours_cfg, timm_cfg = recipe(ours_name), recipe(RECIPES[ours_name])
    torch.manual_seed(0)
    ours = BACKBONES.build(ours_cfg.pop("name"), **ours_cfg)
    model_name = timm_cfg["name"].removeprefix("timm/")
    kwargs = {k: v for k, v in timm_cfg.items() if k not in CONTRACT}
    ref = timm.create_model(model_name, features_only=True, pretrained=False, **kwargs)
    return ours, ref


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_matches_timm_parameters_and_stages(name):
    ours, ref = build_pair(name)
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in ref.parameters())
    assert count == {"resnet10_tiny": 316_700, "resnet18_narrow": 715_264}[name]
    assert [i["num_chs"] for i in ours.feature_info] == ref.feature_info.channels()
    assert [i["reduction"] for i in ours.feature_info] == ref.feature_info.reduction()
    validate_backbone(ours, torch.randn(2, 3, 64, 64))


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_loads_timm_weights_and_computes_the_same_maps(name):
    ours, ref = build_pair(name)
    ref = randomize_bn(ref)
    ours.load_state_dict(ref.state_dict(), strict=True)  # timm's keys, deep stem included
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        got, expected = ours.eval().forward_features(x), ref(x)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_initialises_as_timm(name):
    # Same draws are not expected (timm builds in another order), the same distributions are:
    # norms exactly timm's (each block's last scale at zero), convs He-normal on fan-out.
    ours, ref = build_pair(name)
    own = ours.state_dict()
    for key, expected in ref.state_dict().items():
        got = own[key]
        if got.ndim < 4:
            assert torch.equal(got, expected), f"{key}: {got} != timm's {expected}"
            continue
        std = (2.0 / (got.shape[0] * got[0, 0].numel())) ** 0.5  # gain² = 2 for ReLU
        for weights, who in ((got, "ours"), (expected, "timm")):
            assert weights.std().item() == pytest.approx(std, rel=0.2), f"{who} {key}"
            assert abs(weights.mean().item()) < 0.2 * std, f"{who} {key}"


def test_out_indices_build_only_the_stages_needed():
    net = resnet18(channels=[32, 64, 128, 256], out_indices=[1, 2, 3], num_classes=4)
    assert not hasattr(net, "layer4") and not any(k.startswith("layer4") for k in net.state_dict())
    assert [i["module"] for i in net.feature_info] == ["layer1", "layer2", "layer3"]
    assert net.num_features == 128 and net.fc.in_features == 128
    assert net(torch.randn(1, 3, 64, 64)).shape == (1, 4)


def test_deep_tiered_stem_widths_and_avg_down_shortcut():
    net = resnet10(stem_type="deep_tiered", stem_width=16, avg_down=True)
    widths = [m.out_channels for m in net.conv1 if isinstance(m, torch.nn.Conv2d)]
    assert widths == [12, 16, 32]  # 3/4 of, all of, and twice the stem width
    assert net.stem_weight == "conv1.0.weight"
    shortcut = net.layer2[0].downsample
    assert isinstance(shortcut[0], torch.nn.AvgPool2d) and shortcut[1].stride == (1, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(channels=[16, 32, 64]), "channels must be four stage widths"),
        (dict(stem_type="tiered"), "stem_type must be one of"),
        (dict(out_indices=[1, 5]), "out_indices must name feature maps"),
        (dict(out_indices=[]), "out_indices must name feature maps"),
    ],
)
def test_bad_knobs_are_refused_with_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resnet18(**kwargs)
