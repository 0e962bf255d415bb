"""Segmentation heads: logits at input resolution from feature_info alone; FC = 1x1 conv."""

import pytest
import torch
from torch import nn

from cvtasks.heads.segmentation import (
    FCNHead,
    UNetHead,
    conv_from_linear,
    default_decoder_channels,
)
from cvtasks.registry import HEADS


def fake_features(batch, size, stages):
    """Feature maps and their feature_info for ``stages`` = [(channels, reduction), ...]."""
    info = [{"num_chs": c, "reduction": r, "module": f"s{i}"} for i, (c, r) in enumerate(stages)]
    maps = [torch.randn(batch, c, -(-size // r), -(-size // r)) for c, r in stages]
    return info, maps


STAGES = {
    "resnet-like from 1/2": [(8, 2), (8, 4), (16, 8), (32, 16), (64, 32)],
    "plain from 1/1": [(4, 1), (8, 2), (16, 4)],
    "one stage": [(12, 4)],
    "repeated reduction": [(4, 2), (6, 2), (8, 4)],
}


@pytest.mark.parametrize("name", ["fcn", "unet"])
@pytest.mark.parametrize("stages", STAGES.values(), ids=STAGES.keys())
def test_logits_at_input_resolution_and_every_parameter_learns(name, stages):
    torch.manual_seed(0)
    info, maps = fake_features(2, 32, stages)
    head = HEADS.build(name, feature_info=info, num_classes=5)
    maps = [m.requires_grad_() for m in maps]
    out = head(maps)
    assert out.shape == (2, 5, 32, 32)
    out.logsumexp(1).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    if name == "unet":  # the decoder fuses every stage
        assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in maps)


def test_unet_decoder_widths_default_and_explicit():
    resnet18 = [(64, 2), (64, 4), (128, 8), (256, 16), (512, 32)]
    info, _ = fake_features(1, 32, resnet18)
    assert default_decoder_channels(info, full_resolution=True) == [256, 128, 64, 32, 16]  # SMP
    info, maps = fake_features(1, 32, STAGES["resnet-like from 1/2"])
    head = UNetHead(info, num_classes=3, full_resolution=True)
    assert [block[1].out_chs for block in head.blocks] == [32, 16, 16, 16, 8]
    head = UNetHead(info, num_classes=3, decoder_channels=[32, 16, 8, 8, 4], full_resolution=True)
    assert [block[1].out_chs for block in head.blocks] == [32, 16, 8, 8, 4]
    assert head(maps).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"needs 5 positive widths.*4 skip stages.*1/2"):
        UNetHead(info, num_classes=3, decoder_channels=[32, 16, 8, 8], full_resolution=True)


def test_unet_without_the_full_resolution_step_upsamples_its_logits():
    info, maps = fake_features(2, 32, STAGES["resnet-like from 1/2"])
    head = UNetHead(info, num_classes=3)  # the default
    assert [block[1].out_chs for block in head.blocks] == [32, 16, 16, 16]
    assert head(maps).shape == (2, 3, 32, 32)
    built = HEADS.build("unet", feature_info=info, num_classes=3, full_resolution=False)
    assert built(maps).shape == (2, 3, 32, 32)


def test_fcn_is_a_convolutionalized_classifier_on_the_deepest_map():
    info, maps = fake_features(1, 32, STAGES["plain from 1/1"])
    head = FCNHead(info, num_classes=3, hidden_dims=[10])
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (16, 10, (1, 1)),
        (10, 3, (1, 1)),
    ]
    coarse = head.classifier(maps[-1])
    assert coarse.shape[-2:] == (8, 8)  # one class vector per deepest position, then upsampled


def test_fc_layer_equals_one_by_one_convolution():
    """Seed 001 eq. (6.24) = (6.25): z_j = sum_i W_ji x_i + b_j at every position."""
    torch.manual_seed(0)
    linear = nn.Linear(512, 8)
    conv = conv_from_linear(linear)
    volume = torch.randn(2, 512, 7, 7)
    per_position = linear(volume.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(conv(volume), per_position)
    # The seed's depth-reduction example (seed 001 §6.4, "One by One Convolutions and Fully
    # Convolutional Networks"): 8 one-by-one kernels over 512 channels
    # plus 8 biases. The seed prints the total as 4,112; 8 * 512 + 8 is 4,104.
    assert sum(p.numel() for p in conv.parameters()) == 8 * 512 + 8 == 4104


def test_bad_arguments():
    info, _ = fake_features(1, 32, STAGES["one stage"])
    with pytest.raises(ValueError, match="num_classes"):
        FCNHead(info, num_classes=0)
    with pytest.raises(ValueError, match=r"task\.head\.dropout"):
        UNetHead(info, num_classes=2, dropout=1.0)
