"""Folding BatchNorm in timm models: norm + activation layers, 'same'-padded convolutions."""

import pytest
import torch
from torch import nn

from cvtasks.inference import count_batchnorms
from cvtasks.layers import can_fuse, fuse_batchnorm
from cvtasks.registry import BACKBONES
from tests.layers.conftest import randomize_bn


def folded_matches(name):
    torch.manual_seed(0)
    model = randomize_bn(BACKBONES.build(name, num_classes=5)).eval()
    folded = fuse_batchnorm(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)
    return model, folded


@pytest.mark.parametrize("name", ["timm/efficientnet_b0", "timm/resnet18"])
def test_every_batchnorm_of_timm_efficientnet_and_resnet_folds(name):
    model, folded = folded_matches(name)
    assert count_batchnorms(model) > 0 and count_batchnorms(folded) == 0


def test_norm_act_layers_keep_their_activation():
    model, folded = folded_matches("timm/efficientnet_b0")
    block = folded.model.blocks[1][0]  # an InvertedResidual: conv_pw -> bn1 (BN + SiLU) -> ...
    assert isinstance(block.conv_pw, nn.Conv2d) and block.conv_pw.bias is not None
    assert isinstance(block.bn1, nn.Sequential) and isinstance(block.bn1[-1], nn.SiLU)
    assert type(model.model.blocks[1][0].bn1).__name__ == "BatchNormAct2d"


def test_same_padded_convolutions_are_left_alone():
    """tf_ models pad stride-2 convolutions at run time (Conv2dSame): those norms stay."""
    model, folded = folded_matches("timm/tf_efficientnet_b0")
    kept = count_batchnorms(folded)
    same = [m for m in model.modules() if type(m).__name__ == "Conv2dSame"]
    assert same and 0 < kept < count_batchnorms(model)
    assert not can_fuse(same[0], nn.BatchNorm2d(same[0].out_channels))


def test_a_norm_subclass_with_its_own_forward_does_not_fold():
    class ScaledBatchNorm(nn.BatchNorm2d):
        def forward(self, x):
            return 2 * super().forward(x)

    assert not can_fuse(nn.Conv2d(3, 4, 1), ScaledBatchNorm(4))
    assert can_fuse(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
