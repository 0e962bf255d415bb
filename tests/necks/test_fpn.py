"""FPN: outputs and feature_info over cvtasks and timm backbones, levels, top-down flow, errors."""

import pytest
import torch

from cvtasks.necks.fpn import FPN
from cvtasks.registry import BACKBONES, NECKS


def run(backbone, neck, size):
    return neck(backbone.forward_features(torch.randn(2, 3, size, size)))


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("resnet10", {"channels": [8, 16, 32, 64], "stem_width": 8}),  # stem stage at 1/2
        ("timm/resnet10t", {}),  # timm, stem stage at 1/2
        ("timm/convnext_atto", {}),  # timm, first stage at 1/4
    ],
)
def test_outputs_follow_the_backbone_stages(name, kw):
    backbone = BACKBONES.build(name, **kw).eval()
    neck = NECKS.build("fpn", feature_info=backbone.feature_info, channels=16)
    x = torch.randn(2, 3, 70, 70)  # odd stage sizes on the way down
    stages = backbone.forward_features(x)
    outputs = neck(stages)
    assert len(outputs) == len(stages) == len(neck.feature_info)
    for out, stage, info, stage_info in zip(
        outputs, stages, neck.feature_info, backbone.feature_info
    ):
        assert out.shape == (2, 16, *stage.shape[-2:])
        assert info["num_chs"] == 16 and info["reduction"] == stage_info["reduction"]
    assert [i["module"] for i in neck.feature_info] == [f"smooth.{j}" for j in range(len(stages))]


def test_levels_pick_stages_and_negative_indices_count_from_the_end():
    backbone = BACKBONES.build("resnet10", channels=[8, 16, 32, 64], stem_width=8).eval()
    neck = NECKS.build("fpn", feature_info=backbone.feature_info, channels=8, levels=[1, -2, -1])
    assert neck.levels == [1, 3, 4]
    assert [i["reduction"] for i in neck.feature_info] == [4, 16, 32]
    assert [tuple(o.shape[-2:]) for o in run(backbone, neck, 64)] == [(16, 16), (4, 4), (2, 2)]


def test_deep_stages_reach_shallow_outputs_but_not_the_reverse():
    info = [{"num_chs": 4, "reduction": r, "module": f"s{r}"} for r in (4, 8, 16)]
    neck = FPN(info, channels=8).eval()
    stages = [torch.randn(1, 4, 32 // r * 4, 32 // r * 4) for r in (1, 2, 4)]
    base = neck(stages)
    deeper = neck([stages[0], stages[1], stages[2] + 1.0])
    assert all(not torch.allclose(a, b) for a, b in zip(base, deeper))  # top-down everywhere
    shallower = neck([stages[0] + 1.0, stages[1], stages[2]])
    assert not torch.allclose(base[0], shallower[0])
    assert torch.equal(base[1], shallower[1]) and torch.equal(base[2], shallower[2])


def test_top_down_is_a_nearest_upsample_added_to_the_lateral():
    info = [
        {"num_chs": 1, "reduction": 4, "module": "a"},
        {"num_chs": 1, "reduction": 8, "module": "b"},
    ]
    neck = FPN(info, channels=1, norm_layer=None, act_layer=None)
    with torch.no_grad():  # identity laterals and smoothing: the output is the merged map
        for lateral in neck.laterals:
            lateral.weight.fill_(1.0)
            lateral.bias.zero_()
        for smooth in neck.smooth:
            smooth.conv.weight.zero_()
            smooth.conv.weight[0, 0, 1, 1] = 1.0
            smooth.conv.bias.zero_()
    fine, coarse = torch.randn(1, 1, 4, 4), torch.randn(1, 1, 2, 2)
    out_fine, out_coarse = neck([fine, coarse])
    assert torch.equal(out_coarse, coarse)
    expected = fine + coarse.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(out_fine, expected)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"levels": [0, 5]}, r"neck.levels must be indices of backbone stages 0..2, got \[0, 5\]"),
        ({"levels": []}, "neck.levels must be indices"),
        ({"levels": [2, 1]}, r"neck.levels must be strictly increasing .* got \[2, 1\]"),
        ({"channels": 0}, "neck.channels must be >= 1, got 0"),
        ({"outputs": 0}, "neck.outputs must be between 1 and the 3 levels read, got 0"),
        ({"outputs": 4}, "neck.outputs must be between 1 and the 3 levels read, got 4"),
    ],
)
def test_bad_settings_are_refused(kw, message):
    info = [{"num_chs": 4, "reduction": r, "module": f"s{r}"} for r in (4, 8, 16)]
    with pytest.raises(ValueError, match=message):
        FPN(info, **kw)


def test_too_few_feature_maps_are_refused():
    info = [{"num_chs": 4, "reduction": r, "module": f"s{r}"} for r in (4, 8, 16)]
    with pytest.raises(ValueError, match=r"FPN reads backbone stages \[0, 1, 2\] but got 2"):
        FPN(info)([torch.randn(1, 4, 8, 8), torch.randn(1, 4, 4, 4)])


def test_fewer_outputs_return_the_finest_maps_and_build_nothing_else():
    info = [{"num_chs": 4, "reduction": r, "module": f"s{r}"} for r in (4, 8, 16)]
    features = [torch.randn(2, 4, 16 // 2**i, 16 // 2**i) for i in range(3)]
    torch.manual_seed(0)
    every = FPN(info, channels=8)
    torch.manual_seed(0)
    finest = FPN(info, channels=8, outputs=1)
    finest.laterals.load_state_dict(every.laterals.state_dict())
    finest.smooth[0].load_state_dict(every.smooth[0].state_dict())
    (out,) = finest(features)
    torch.testing.assert_close(out, every(features)[0])  # the same top-down path
    assert len(finest.smooth) == 1 and [f["reduction"] for f in finest.feature_info] == [4]
    out.sum().backward()  # every parameter takes part, as DDP requires
    assert all(p.grad is not None for p in finest.parameters())
